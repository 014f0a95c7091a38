"""``rfb.open_on``: the RFB handshake on a stream that is already connected (an agent's relay)."""

import socket
import threading

import pytest

from asci import rfb
from tests.fake_vnc import _quietly, pattern


def _served(passwords, width=32, height=16):
    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=_quietly, args=(theirs, passwords, width, height, pattern(width, height), []),
                              daemon=True)
    thread.start()
    return ours, thread


def test_open_on_an_open_stream_authenticates_and_reads_the_framebuffer():
    ours, thread = _served(("right-password",))
    sock, width, height, name = rfb.open_on(ours, "right-password", timeout=5)
    with sock:
        pixels = bytearray(width * height * 4)
        rfb._request(sock, width, height, False)
        rfb._read_update(sock, width, height, pixels)
    assert (width, height, name) == (32, 16, "fake desktop")
    assert bytes(pixels) == pattern(32, 16)
    thread.join(5)


def test_open_on_closes_the_stream_when_the_server_refuses_the_password():
    ours, thread = _served(("right-password",))
    with pytest.raises(rfb.RFBError, match="authentication failed"):
        rfb.open_on(ours, "wrong-password", timeout=5)
    assert ours.fileno() == -1  # closed: a refused relay leaves no descriptor behind
    thread.join(5)
