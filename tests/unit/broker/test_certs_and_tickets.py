"""Facility certificates (``broker.certs``) and relay tickets (``broker.tickets``): what they are valid for
and every way a ticket is refused."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from broker import certs, tickets
from broker.errors import BadRequest


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    issued = certs.init(folder)
    node = certs.issue(folder, "far1", ["127.0.0.2", "far1.example.org"])
    other = certs.issue(folder, "far2", ["127.0.0.3"])
    return folder, issued, node, other


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_writes_a_ca_and_a_client_certificate_with_private_keys(pki):
    folder, issued, _node, _other = pki
    for name in ("ca-key.pem", "key.pem"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    ca, client = _cert(folder / "ca.pem"), _cert(folder / "cert.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert client.issuer == ca.subject
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    client.verify_directly_issued_by(ca)
    assert issued[0].not_after > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3000)
    assert dt.timedelta(days=820) < issued[1].not_after - dt.datetime.now(dt.timezone.utc) < dt.timedelta(days=826)


def test_init_refuses_to_replace_a_ca_unless_forced(pki, tmp_path):
    folder = pki[0]
    with pytest.raises(BadRequest, match="already holds a facility CA"):
        certs.init(folder)
    certs.init(tmp_path)
    first = (tmp_path / "ca.pem").read_bytes()
    certs.init(tmp_path, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != first


def test_issue_writes_a_server_certificate_for_the_given_addresses(pki):
    folder, _issued, node, _other = pki
    target = folder / "far1"
    assert sorted(p.name for p in target.iterdir()) == ["ca.pem", "server-cert.pem", "server-key.pem"]
    assert stat.S_IMODE((target / "server-key.pem").stat().st_mode) == 0o600
    assert (target / "ca.pem").read_bytes() == (folder / "ca.pem").read_bytes()
    cert = _cert(target / "server-cert.pem")
    cert.verify_directly_issued_by(_cert(folder / "ca.pem"))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.2")]
    assert names.get_values_for_type(x509.DNSName) == ["far1.example.org"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert certs.common_name(cert) == "far1" and node.not_after == certs.not_after(target / "server-cert.pem")


@pytest.mark.parametrize("hosts, message", [([], "at least one --host"), (["not a host"], "IP address or a DNS"),
                                            (["-bad.example"], "IP address or a DNS"), (["1.2.3"], "IP address")])
def test_issue_refuses_unusable_hosts_and_names(pki, hosts, message):
    with pytest.raises(BadRequest, match=message):
        certs.issue(pki[0], "far9", hosts)
    with pytest.raises(BadRequest, match="node name"):
        certs.issue(pki[0], "../escape", ["127.0.0.9"])
    assert not (pki[0] / "far9").exists()


def test_issue_without_a_ca_says_how_to_make_one(tmp_path):
    with pytest.raises(BadRequest, match="asci node certs init"):
        certs.issue(tmp_path, "far1", ["127.0.0.2"])


def test_the_certificates_work_for_tls_with_client_authentication(pki):
    """An in-memory TLS handshake: node server certificate + platform client certificate, verified both ways."""
    folder = pki[0]
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "far1" / "server-cert.pem", folder / "far1" / "server-key.pem")
    server.load_verify_locations(folder / "ca.pem")
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(folder / "ca.pem")
    client.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    assert _handshake(server, client, "127.0.0.2") == "ok"
    assert "mismatch" in _handshake(server, client, "127.0.0.3")  # valid for 127.0.0.2 only
    # a node's server certificate cannot act as a client
    rogue = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    rogue.load_verify_locations(folder / "ca.pem")
    rogue.load_cert_chain(folder / "far2" / "server-cert.pem", folder / "far2" / "server-key.pem")
    assert _handshake(server, rogue, "127.0.0.2") != "ok"


def _handshake(server_context, client_context, hostname) -> str:
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    client = client_context.wrap_bio(c_in, c_out, server_hostname=hostname)
    done = {"server": False, "client": False}
    for _ in range(20):
        for name, side, out, peer_in in (("client", client, c_out, s_in), ("server", server, s_out, c_in)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as exc:
                    return str(exc)
            peer_in.write(out.read())
        if all(done.values()):
            try:  # TLS 1.3: the server checks the client's certificate after the client finished
                server.read(1)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                return str(exc)
            c_in.write(s_out.read())
            try:
                client.read(1)
            except ssl.SSLWantReadError:
                return "ok"
            except ssl.SSLError as exc:
                return str(exc)
    return "no handshake"


# ---------------------------------------------------------------- tickets
@pytest.fixture(scope="module")
def keys(pki):
    folder = pki[0]
    platform = tickets.load_private_key(folder / "key.pem")
    der = _cert(folder / "cert.pem").public_bytes(ssl_encoding())
    node_key = tickets.load_private_key(folder / "far2" / "server-key.pem")
    node_der = _cert(folder / "far2" / "server-cert.pem").public_bytes(ssl_encoding())
    return platform, der, node_key, node_der


def ssl_encoding():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_a_valid_ticket_opens_once(keys):
    platform, der, _node_key, _node_der = keys
    clock = Clock()
    checker = tickets.TicketChecker("far1", clock)
    ticket = tickets.mint(platform, "i1-s7", "far1", "share:3", ttl_s=30, now=clock.now)
    claims = checker.check(ticket, der)
    assert (claims.session_key, claims.node, claims.viewer, claims.expires) == ("i1-s7", "far1", "share:3",
                                                                                1_000_030)
    with pytest.raises(tickets.TicketRefused, match="already used"):
        checker.check(ticket, der)


def test_expired_far_future_other_node_and_forged_tickets_are_refused(keys):
    platform, der, node_key, node_der = keys
    clock = Clock()
    checker = tickets.TicketChecker("far1", clock)
    expired = tickets.mint(platform, "i1-s7", "far1", "owner", ttl_s=10, now=clock.now - 11)
    with pytest.raises(tickets.TicketRefused, match="expired"):
        checker.check(expired, der)
    far_future = tickets.mint(platform, "i1-s7", "far1", "owner", ttl_s=60, now=clock.now + 600)
    with pytest.raises(tickets.TicketRefused, match="more than 60 s"):
        checker.check(far_future, der)
    elsewhere = tickets.mint(platform, "i1-s7", "far2", "owner", now=clock.now)
    with pytest.raises(tickets.TicketRefused, match="for node 'far2'"):
        checker.check(elsewhere, der)
    # signed by a node's key, presented over the platform's certificate: forged
    by_a_node = tickets.mint(node_key, "i1-s7", "far1", "owner", now=clock.now)
    with pytest.raises(tickets.TicketRefused, match="forged"):
        checker.check(by_a_node, der)
    # presented over a node's (server) certificate: refused whatever it says
    with pytest.raises(tickets.TicketRefused, match="not a platform client certificate"):
        checker.check(by_a_node, node_der)
    # claims changed after signing
    good = tickets.mint(platform, "i1-s7", "far1", "owner", now=clock.now)
    body, signature = good.split(".")
    changed = tickets._b64(tickets._unb64(body).replace(b"i1-s7", b"i1-s8")) + "." + signature
    with pytest.raises(tickets.TicketRefused, match="forged"):
        checker.check(changed, der)
    for junk in ("", "a.b", "no-dot", "x" * 3000, None, 12):
        with pytest.raises(tickets.TicketRefused):
            checker.check(junk, der)
    with pytest.raises(tickets.TicketRefused, match="no client certificate"):
        checker.check(good, b"")
    assert checker.check(good, der).session_key == "i1-s7"  # none of the refusals used it up


def test_nonces_are_forgotten_only_after_their_ticket_expired(keys):
    platform, der, _node_key, _node_der = keys
    clock = Clock()
    checker = tickets.TicketChecker("far1", clock)
    ticket = tickets.mint(platform, "i1-s7", "far1", "owner", ttl_s=5, now=clock.now)
    checker.check(ticket, der)
    clock.now += 4
    with pytest.raises(tickets.TicketRefused, match="already used"):
        checker.check(ticket, der)
    clock.now += 2
    checker.check(tickets.mint(platform, "i1-s7", "far1", "owner", now=clock.now), der)
    assert len(checker._seen) == 1  # the expired one is gone
    with pytest.raises(tickets.TicketRefused, match="expired"):
        checker.check(ticket, der)


def test_mint_refuses_long_lives_and_odd_claims(keys):
    platform = keys[0]
    with pytest.raises(ValueError, match="at most 60"):
        tickets.mint(platform, "i1-s7", "far1", "owner", ttl_s=61)
    for key, viewer in (("../x", "owner"), ("i1-s7", "admin"), ("i1-s7", "share:x")):
        with pytest.raises(ValueError):
            tickets.mint(platform, key, "far1", viewer)


def test_the_certs_commands_print_what_they_wrote_and_when_it_expires(tmp_path, capsys):
    from asci.cli import main

    assert main(["node", "certs", "init", str(tmp_path / "pki"), "--days", "30"]) == 0
    assert main(["node", "certs", "issue", str(tmp_path / "pki"), "node07", "--host", "10.1.2.7", "--host",
                 "node07.example.org", "--days", "10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all("(expires 20" in line and line.endswith("UTC)") for line in out)
    assert out[0].startswith("CN=asci facility CA") and "ca-key.pem" in out[0]
    assert out[2].startswith("CN=node07:") and "server-key.pem" in out[2]
    ca_days = certs.not_after(tmp_path / "pki" / "ca.pem") - dt.datetime.now(dt.timezone.utc)
    node_days = certs.not_after(tmp_path / "pki" / "node07" / "server-cert.pem") - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=29) < ca_days <= dt.timedelta(days=30) and node_days <= dt.timedelta(days=10)
    assert main(["node", "certs", "init", str(tmp_path / "pki")]) == 1  # kept without --force
    assert "already holds a facility CA" in capsys.readouterr().err
    assert main(["node", "certs", "issue", str(tmp_path / "pki"), "node08", "--host", "not a host"]) == 1
    assert not (tmp_path / "pki" / "node08").exists()
