"""Failed-login rate limit per user name and client address, kept in the process.

At most ``login_max_attempts`` failures within ``login_window_s`` seconds for one
(user name, address) pair; further attempts are refused until the oldest failure
leaves the window. A successful login clears the pair's failures. Kept in memory:
waitress serves from one process, and a restart only forgets recent failures.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from asci.http import app_settings


class LoginLimiter:
    """Sliding-window counter of failed logins."""

    def __init__(self, max_attempts: int, window_s: float, clock=time.monotonic) -> None:
        self.max_attempts = max_attempts
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        now = self._clock()
        failures = self._failures.setdefault(key, deque())
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        key = (username.lower(), address)
        with self._lock:
            failures = self._recent(key)
            if len(failures) < self.max_attempts:
                return 0
            return max(1, int(self.window_s - (self._clock() - failures[0]) + 0.999))

    def failed(self, username: str, address: str) -> None:
        key = (username.lower(), address)
        with self._lock:
            self._recent(key).append(self._clock())
            if len(self._failures) > 100_000:  # bound memory under a spray of user names
                self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop((username.lower(), address), None)


def limiter_for(app) -> LoginLimiter:
    """The application's limiter, created from its settings on first use."""
    limiter = app.extensions.get("asci_login_limiter")
    if limiter is None:
        settings = app_settings(app)
        limiter = LoginLimiter(settings.login_max_attempts, settings.login_window_s)
        app.extensions["asci_login_limiter"] = limiter
    return limiter
