"""Start and drive the test OpenID Connect provider (django-oidc-provider behind waitress).

    provider = OIDCProvider(tmp_dir, users=[...], clients=[...]).start()
    provider.issuer            # http://127.0.0.1:<port>/openid, exactly the ``iss`` of its ID tokens
    provider.subjects["alice"] # the ``sub`` it gives alice
    sign_in(requests.Session(), app_url + "/login/oidc", "alice", "password")   # a browser's code flow
    provider.stop()

Only 127.0.0.1 is bound; the database is SQLite in ``tmp_dir``; start-up takes a few seconds.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

HERE = Path(__file__).resolve().parent


class OIDCProvider:
    """Bootstrap the provider's database (migrate, RSA key, users, clients), then serve it."""

    def __init__(self, data_dir: Path, *, port: int, users: list[dict], clients: list[dict],
                 idtoken_expire_s: int = 600) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.site_url = f"http://127.0.0.1:{port}"
        self.issuer = f"{self.site_url}/openid"
        self.users, self.clients = users, clients
        self.subjects: dict[str, str] = {}
        self.env = dict(os.environ, OP_DATA_DIR=str(self.data_dir), OP_SITE_URL=self.site_url,
                        OP_IDTOKEN_EXPIRE=str(idtoken_expire_s), DJANGO_SETTINGS_MODULE="oidc_op.settings",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout_s: float = 60.0) -> "OIDCProvider":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config, out = self.data_dir / "config.json", self.data_dir / "bootstrap.json"
        config.write_text(json.dumps({"users": self.users, "clients": self.clients}))
        subprocess.run([sys.executable, "-m", "oidc_op.bootstrap", str(config), str(out)], env=self.env, cwd=HERE,
                       check=True, capture_output=True, text=True, timeout=180)
        self.subjects = json.loads(out.read_text())["subjects"]
        self._log = open(self.data_dir / "provider.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "waitress", "--listen", f"127.0.0.1:{self.port}", "--threads", "4",
             "oidc_op.wsgi:application"], env=self.env, cwd=HERE, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        url = f"{self.issuer}/.well-known/openid-configuration"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the provider exited with {self.process.returncode}: {self.log_text()}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the provider did not answer on {url} within {timeout_s:.0f} s: {self.log_text()}")
            time.sleep(0.1)

    def log_text(self) -> str:
        path = self.data_dir / "provider.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _csrf(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no Django CSRF token on the provider's page"
    return match.group(1)


def sign_in(http: requests.Session, start_url: str, username: str, password: str,
            allow_consent: bool = True) -> requests.Response:
    """Follow a browser's authorization-code flow from ``start_url`` (the application's /login/oidc):
    the provider's login form, its consent page when it shows one, and the application's callback.
    Returns the last response (after the application's redirects)."""
    def provider_login_form(page: requests.Response) -> bool:  # not the application's own login form
        return 'name="username"' in page.text and "csrfmiddlewaretoken" in page.text

    response = http.get(start_url, timeout=15)
    response.raise_for_status()
    if provider_login_form(response):
        next_url = parse_qs(urlsplit(response.url).query).get("next", [""])[0]
        response = http.post(response.url, timeout=15, headers={"Referer": response.url}, data={
            "csrfmiddlewaretoken": _csrf(response.text), "username": username, "password": password,
            "next": next_url})
        response.raise_for_status()
        if provider_login_form(response):
            raise AssertionError(f"the provider refused the login of {username}")
    if "Request for Permission" in response.text:  # django-oidc-provider's consent page
        hidden = {key: html.unescape(value) for key, value in
                  re.findall(r'<input name="([^"]+)" type="hidden" value="([^"]*)"', response.text)}
        form = {"csrfmiddlewaretoken": _csrf(response.text), **hidden}
        if allow_consent:
            form["allow"] = "Authorize"
        action = re.search(r'<form method="post" action="([^"]+)"', response.text).group(1)
        response = http.post(urljoin(response.url, action), data=form, timeout=15, headers={"Referer": response.url})
    return response
