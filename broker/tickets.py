"""Relay tickets: what the platform hands a node agent to open one viewer's VNC byte stream.

A ticket is ``base64url(claims JSON) "." base64url(ECDSA-P256-SHA256 signature)``, signed with the
platform's client key (``certs.init``'s ``key.pem``). The claims name the session's folder on the
node (``s``), the node (``n``), the viewer (``v``: ``owner`` or ``share:<id>``), an expiry (``exp``,
Unix seconds, at most :data:`MAX_TTL_S` ahead) and a random ``nonce``.

The agent accepts a ticket only over a TLS connection whose client certificate was issued by the
facility CA for client use, and only when the signature verifies with *that certificate's* public key
(so a ticket is worth nothing without the platform's key, and a node, whose certificate is for servers,
can mint none), the node is the agent's own, it has not expired, it is no more than ``MAX_TTL_S`` in
the future, and its nonce was not seen before (nonces are remembered until their ticket expires).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from broker.errors import Forbidden

MAX_TTL_S = 60
DEFAULT_TTL_S = 30
_VIEWER = re.compile(r"owner|share:\d{1,12}")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}")


class TicketRefused(Forbidden):
    """A relay ticket that opens nothing: forged, expired, replayed, for another node, or malformed."""


@dataclass(frozen=True)
class Ticket:
    """What a valid ticket lets its bearer open."""

    session_key: str
    node: str
    viewer: str
    expires: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(private_key: ec.EllipticCurvePrivateKey, session_key: str, node: str, viewer: str,
         ttl_s: float = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A ticket for ``viewer`` to open session folder ``session_key`` on ``node`` for ``ttl_s`` seconds."""
    if not _KEY.fullmatch(session_key) or not _VIEWER.fullmatch(viewer) or not node:
        raise ValueError(f"unusable ticket claims {session_key!r}, {node!r}, {viewer!r}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"a ticket lives at most {MAX_TTL_S} s, not {ttl_s}")
    claims = {"s": session_key, "n": node, "v": viewer, "exp": int((now or time.time()) + ttl_s),
              "nonce": secrets.token_hex(16)}
    body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    signature = private_key.sign(body, ec.ECDSA(hashes.SHA256()))
    return f"{_b64(body)}.{_b64(signature)}"


def load_private_key(path) -> ec.EllipticCurvePrivateKey:
    """The platform's EC private key from a PEM file."""
    with open(path, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: relay tickets need an EC key (asci node certs init makes one)")
    return key


def is_client_certificate(cert: x509.Certificate) -> bool:
    """True when ``cert`` may act as a TLS client (its extended key usage states clientAuth)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage


class TicketChecker:
    """The agent's side: verifies tickets for node ``node`` and remembers their nonces until expiry."""

    def __init__(self, node: str, clock=time.time) -> None:
        self.node = node
        self.clock = clock
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, ticket: str, peer_certificate_der: bytes) -> Ticket:
        """The ticket's claims; :class:`TicketRefused` unless it is valid, signed by the TLS peer's key,
        for this node, unexpired and unused (using it marks it used)."""
        if not isinstance(ticket, str) or len(ticket) > 2000 or ticket.count(".") != 1:
            raise TicketRefused("malformed ticket")
        try:
            cert = x509.load_der_x509_certificate(peer_certificate_der)
        except (ValueError, TypeError):
            raise TicketRefused("no client certificate") from None
        if not is_client_certificate(cert) or not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
            raise TicketRefused("the connection's certificate is not a platform client certificate")
        body_text, signature_text = ticket.split(".")
        try:
            body, signature = _unb64(body_text), _unb64(signature_text)
            cert.public_key().verify(signature, body, ec.ECDSA(hashes.SHA256()))
            claims = json.loads(body)
            found = Ticket(str(claims["s"]), str(claims["n"]), str(claims["v"]), int(claims["exp"]),
                           str(claims["nonce"]))
        except InvalidSignature:
            raise TicketRefused("forged ticket (the signature is not the platform's)") from None
        except (ValueError, KeyError, TypeError):
            raise TicketRefused("malformed ticket") from None
        now = self.clock()
        if found.node != self.node:
            raise TicketRefused(f"ticket for node {found.node!r}, this is {self.node!r}")
        if found.expires <= now:
            raise TicketRefused("expired ticket")
        if found.expires > now + MAX_TTL_S + 5:
            raise TicketRefused(f"ticket valid for more than {MAX_TTL_S} s")
        if not _KEY.fullmatch(found.session_key) or not _VIEWER.fullmatch(found.viewer) or len(found.nonce) < 16:
            raise TicketRefused("malformed ticket")
        with self._lock:
            for nonce in [n for n, expires in self._seen.items() if expires <= now]:
                del self._seen[nonce]
            if found.nonce in self._seen:
                raise TicketRefused("ticket already used")
            self._seen[found.nonce] = found.expires
        return found
