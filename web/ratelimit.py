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

Memory is bounded whatever is sprayed: asking about a name adds nothing, each counter keeps at most
the failures it needs, a counter whose failures have left the window is dropped, and at most
``MAX_KEYS`` counters are kept per table (beyond that the expired go first, then the least recently
failed).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from asci.http import app_settings

FIRST_DELAY_S = 4.0
MAX_KEYS = 20_000
SWEEP_EVERY = 1024  # failures between two sweeps of expired counters (each sweep: one pass over the tables)
PAIR_HISTORY = 32  # failures kept per (name, address) beyond login_max_attempts: the delay is capped long before


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
        self._failures_since_sweep = 0

    def _recent(self, table: dict, key, now: float) -> deque[float]:
        """The failures of ``key`` within the window (an empty deque, not stored, when there are none)."""
        failures = table.get(key)
        if failures is None:
            return deque()
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        if not failures:
            del table[key]
        return failures

    def _add(self, table: dict, key, now: float, keep: int) -> None:
        failures = table.pop(key, None)  # re-inserted last: the table is ordered by latest failure
        if failures is None:
            failures = deque(maxlen=keep)
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        failures.append(now)
        table[key] = failures
        if len(table) > MAX_KEYS:  # bound memory under a spray of names or addresses
            self._prune(table, now)

    def delay_after(self, failures: int) -> float:
        """How long the next attempt waits after the last of ``failures`` failures."""
        if failures < self.max_attempts:
            return 0.0
        return min(self.window_s, FIRST_DELAY_S * 2 ** (failures - self.max_attempts))

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until this name may be tried again from this address (0: now)."""
        now = self._clock()
        with self._lock:
            by_address = self._recent(self._by_address, address, now)
            wait = 0.0
            if len(by_address) >= self.max_per_address:
                wait = self.window_s - (now - by_address[0])
            pair = self._recent(self._by_pair, (username.lower(), address), now)
            if pair:
                wait = max(wait, self.delay_after(len(pair)) - (now - pair[-1]))
        return max(1, int(wait + 0.999)) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            self._add(self._by_pair, (username.lower(), address), now, self.max_attempts + PAIR_HISTORY)
            self._add(self._by_address, address, now, max(1, min(self.max_per_address, 100_000)))
            self._failures_since_sweep += 1
            if self._failures_since_sweep >= SWEEP_EVERY:  # counters whose failures all left the window go
                self._failures_since_sweep = 0
                for table in (self._by_pair, self._by_address):
                    self._drop_expired(table, now)

    def _drop_expired(self, table: dict, now: float) -> None:
        for key in list(table):
            failures = table[key]
            while failures and now - failures[0] >= self.window_s:
                failures.popleft()
            if not failures:
                del table[key]

    def _prune(self, table: dict, now: float) -> None:
        self._drop_expired(table, now)
        if len(table) > MAX_KEYS:  # still too many: forget those that failed longest ago
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
