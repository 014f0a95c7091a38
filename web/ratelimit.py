"""Failed-login throttling that slows guessing without letting anyone lock another person out.

Two counters of failures within ``login_window_s`` seconds, both keyed by the client's address
(``asci.http.client_address``: behind a reverse proxy listed in ``trusted_proxies``, the address the
proxy saw):

* per (user name, address): the first ``login_max_attempts`` failures cost nothing; after that each
  further attempt must wait 4 s, 8 s, 16 s ... (at most ``login_window_s``) after the last failure;
* per address, whatever the name: after ``login_max_per_address`` failures the address is refused
  until the oldest failure leaves the window (a spray of names from one place).

Nothing is counted per user name alone, so failures from one address never delay the same account
at another address. A successful login clears its (name, address) counter. Kept in memory: waitress
serves from one process, and a restart only forgets recent failures.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from asci.http import app_settings

FIRST_DELAY_S = 4.0
MAX_KEYS = 100_000


class LoginLimiter:
    """Sliding-window failure counters with a progressive delay."""

    def __init__(self, max_attempts: int, window_s: float, max_per_address: int = 1_000_000,
                 clock=time.monotonic) -> None:
        self.max_attempts = max_attempts
        self.window_s = window_s
        self.max_per_address = max_per_address
        self._clock = clock
        self._by_pair: dict[tuple[str, str], deque[float]] = {}
        self._by_address: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, table: dict, key) -> deque[float]:
        now = self._clock()
        failures = table.setdefault(key, deque())
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        return failures

    def delay_after(self, failures: int) -> float:
        """How long the next attempt waits after the last of ``failures`` failures."""
        if failures < self.max_attempts:
            return 0.0
        return min(self.window_s, FIRST_DELAY_S * 2 ** (failures - self.max_attempts))

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until this name may be tried again from this address (0: now)."""
        now = self._clock()
        with self._lock:
            by_address = self._recent(self._by_address, address)
            wait = 0.0
            if len(by_address) >= self.max_per_address:
                wait = self.window_s - (now - by_address[0])
            pair = self._recent(self._by_pair, (username.lower(), address))
            if pair:
                wait = max(wait, self.delay_after(len(pair)) - (now - pair[-1]))
        return max(1, int(wait + 0.999)) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            self._recent(self._by_pair, (username.lower(), address)).append(now)
            self._recent(self._by_address, address).append(now)
            for table in (self._by_pair, self._by_address):
                if len(table) > MAX_KEYS:  # bound memory under a spray of names or addresses
                    self._prune(table, now)

    def _prune(self, table: dict, now: float) -> None:
        for key in list(table):
            failures = table[key]
            while failures and now - failures[0] >= self.window_s:
                failures.popleft()
            if not failures:
                del table[key]
        if len(table) > MAX_KEYS:  # still too many: forget the oldest
            for key in list(table)[:len(table) - MAX_KEYS // 2]:
                del table[key]

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._by_pair.pop((username.lower(), address), None)


def limiter_for(app) -> LoginLimiter:
    """The application's limiter, created from its settings on first use."""
    limiter = app.extensions.get("asci_login_limiter")
    if limiter is None:
        settings = app_settings(app)
        limiter = LoginLimiter(settings.login_max_attempts, settings.login_window_s, settings.login_max_per_address)
        app.extensions["asci_login_limiter"] = limiter
    return limiter
