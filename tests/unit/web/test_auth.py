"""Local login, logout, CSRF, cookie settings and the failed-login limit."""

from web import create_app
from web.ratelimit import LoginLimiter
from tests.support import PASSWORD, csrf_of, login


def test_pages_need_a_login(app):
    client = app.test_client()
    reply = client.get("/sessions")
    assert reply.status_code == 302 and reply.location.startswith("/login?next=/sessions")


def test_login_sets_the_broker_session_key_and_goes_back(app, world):
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    reply = client.post("/login", data={"username": world["names"]["alice"], "password": PASSWORD,
                                        "csrf_token": token, "next": "/sessions"})
    assert reply.status_code == 302 and reply.location == "/sessions"
    with client.session_transaction() as flask_session:
        assert flask_session["user_id"] == world["ids"]["alice"]
    assert client.get("/api/sessions").status_code == 200  # the broker API accepts the login session


def test_wrong_password_fails_politely(app, world):
    client = app.test_client()
    reply = login(client, world["names"]["alice"], "not-the-password")
    assert reply.status_code == 401
    assert "Wrong user name or password." in reply.get_data(as_text=True)
    with client.session_transaction() as flask_session:
        assert "user_id" not in flask_session
    assert login(client, "nobody-at-all").status_code == 401  # same answer for unknown users


def test_forms_need_the_csrf_token(app, world):
    client = app.test_client()
    client.get("/login")
    reply = client.post("/login", data={"username": world["names"]["alice"], "password": PASSWORD})
    assert reply.status_code == 400
    with client.session_transaction() as flask_session:
        assert "user_id" not in flask_session


def test_logout_is_a_csrf_protected_post(as_user):
    client = as_user("alice")
    assert client.post("/logout").status_code == 400
    page = client.get("/").get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": csrf_of(page)}).status_code == 302
    assert client.get("/").status_code == 302


def test_open_redirects_are_refused(app, world):
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    reply = client.post("/login", data={"username": world["names"]["alice"], "password": PASSWORD,
                                        "csrf_token": token, "next": "//evil.example/"})
    assert reply.location == "/"


def test_failed_logins_are_limited_per_user_and_address(settings, world):
    app = create_app(settings.replace(login_max_attempts=3, login_window_s=600), {"TESTING": True})
    client = app.test_client()
    alice = world["names"]["alice"]
    for _ in range(3):
        assert login(client, alice, "wrong-password").status_code == 401
    refused = login(client, alice, PASSWORD)  # even the right password waits
    assert refused.status_code == 429 and "Too many failed attempts" in refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) > 0
    assert login(client, world["names"]["bob"]).status_code == 302  # other users are not slowed
    elsewhere = app.test_client()  # alice herself, from another address, is not locked out
    assert login(elsewhere, alice, PASSWORD, environ={"REMOTE_ADDR": "10.9.8.7"}).status_code == 302


def test_limiter_delays_grow_then_the_window_forgets_and_success_clears():
    now = [1000.0]
    limiter = LoginLimiter(2, 60, clock=lambda: now[0])
    limiter.failed("Alice", "1.2.3.4")
    assert limiter.retry_after("alice", "1.2.3.4") == 0  # the first failures cost nothing
    limiter.failed("alice", "1.2.3.4")
    assert limiter.retry_after("alice", "1.2.3.4") == 4  # then 4 s, 8 s, 16 s ... after the last failure
    assert limiter.retry_after("alice", "5.6.7.8") == 0  # another address is not slowed at all
    now[0] += 4
    assert limiter.retry_after("alice", "1.2.3.4") == 0
    limiter.failed("alice", "1.2.3.4")
    assert limiter.retry_after("alice", "1.2.3.4") == 8
    for _ in range(10):
        limiter.failed("alice", "1.2.3.4")
    assert limiter.retry_after("alice", "1.2.3.4") == 60  # never longer than the window
    now[0] += 61
    assert limiter.retry_after("alice", "1.2.3.4") == 0  # old failures are forgotten
    limiter.failed("alice", "1.2.3.4")
    limiter.failed("alice", "1.2.3.4")
    limiter.succeeded("alice", "1.2.3.4")
    assert limiter.retry_after("alice", "1.2.3.4") == 0


def test_limiter_refuses_an_address_that_sprays_names():
    now = [0.0]
    limiter = LoginLimiter(5, 60, max_per_address=3, clock=lambda: now[0])
    for name in ("a", "b", "c"):
        limiter.failed(name, "9.9.9.9")
    assert limiter.retry_after("d", "9.9.9.9") == 60  # any name, from that address
    assert limiter.retry_after("d", "8.8.8.8") == 0
    now[0] += 30
    assert limiter.retry_after("a", "9.9.9.9") == 30


def test_cookies_are_hardened(tmp_path, settings):
    app = create_app(settings.replace(public_url="https://asci.example.org"))
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert create_app(settings).config["SESSION_COOKIE_SECURE"] is False  # plain-http demo on 127.0.0.1


def test_api_requests_with_a_bearer_token_or_json_skip_csrf_but_cookie_forms_do_not(as_user, world):
    alice = as_user("alice")
    # a form-encoded POST with only the login cookie (what a cross-site form could send): refused
    assert alice.post("/api/sessions", data={"environment": world["env"]}).status_code == 400
    # JSON with the login cookie (needs a CORS preflight cross-site): reaches the broker API
    reply = alice.post("/api/sessions", json={"environment": "nope", "experiment": world["e1"]})
    assert reply.status_code == 404 and "unknown environment" in reply.json["error"]
    # bearer token, no cookie: reaches the API
    from flask import current_app  # noqa: F401
    anonymous = alice.application.test_client()
    reply = anonymous.post("/api/sessions", data="x", headers={"Authorization": f"Bearer {world['tokens']['alice']}"})
    assert reply.status_code == 400 and reply.json["error"]
