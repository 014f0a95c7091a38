"""A small RFB 3.8 server on a session's socket: VNC authentication with the session's passwords, one
32-bit Raw framebuffer (a test pattern). What a desktop's Xvnc answers a framebuffer grab, without Docker."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Iterator

from asci.rfb import vnc_response
from tests.support import bind_unix


def pattern(width: int, height: int) -> bytes:
    """BGRX pixels: red grows left to right, green top to bottom, a blue square in the middle."""
    pixels = bytearray(width * height * 4)
    for y in range(height):
        for x in range(width):
            blue = 255 if width // 3 <= x < 2 * width // 3 and height // 3 <= y < 2 * height // 3 else 0
            pixels[(y * width + x) * 4:(y * width + x) * 4 + 4] = bytes((blue, y * 255 // height, x * 255 // width, 0))
    return bytes(pixels)


def _exact(connection: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _serve(connection: socket.socket, passwords: tuple[str, ...], width: int, height: int, pixels: bytes,
           log: list) -> None:
    with connection:
        connection.sendall(b"RFB 003.008\n")
        _exact(connection, 12)
        connection.sendall(bytes((1, 2)))  # one security type: VNC authentication
        _exact(connection, 1)
        challenge = os.urandom(16)
        connection.sendall(challenge)
        response = _exact(connection, 16)
        which = next((p for p in passwords if vnc_response(p, challenge) == response), None)
        log.append(which)
        if which is None:
            reason = b"authentication failed"
            connection.sendall(struct.pack("!II", 1, len(reason)) + reason)
            return
        connection.sendall(struct.pack("!I", 0))
        _exact(connection, 1)  # ClientInit (shared flag)
        name = b"fake desktop"
        connection.sendall(struct.pack("!HH", width, height) + struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255,
                                                                           16, 8, 0) + struct.pack("!I", len(name)) + name)
        while True:
            kind = _exact(connection, 1)[0]
            if kind == 0:  # SetPixelFormat
                _exact(connection, 19)
            elif kind == 2:  # SetEncodings
                _pad, count = struct.unpack("!BH", _exact(connection, 3))
                _exact(connection, 4 * count)
            elif kind == 3:  # FramebufferUpdateRequest
                _exact(connection, 9)
                connection.sendall(struct.pack("!BxH", 0, 1) + struct.pack("!HHHHi", 0, 0, width, height, 0) + pixels)
            else:
                return


def _quietly(*args) -> None:
    try:
        _serve(*args)
    except OSError:  # the client went away (ConnectionError is one)
        pass


@contextlib.contextmanager
def fake_desktop(socket_path, uid: int, passwords: tuple[str, ...], width: int = 640,
                 height: int = 400) -> Iterator[list]:
    """Serve a framebuffer on the session's socket (made as ``uid``, then locked as the broker locks a real
    desktop's); yields the list of the passwords clients authenticated with (None: refused)."""
    from broker import rundir

    path = Path(socket_path)
    listener = bind_unix(path)
    os.chown(path, uid, uid)
    rundir.lock(rundir.SessionDir(path.parent.parent), uid)
    pixels, log = pattern(width, height), []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_quietly, args=(connection, passwords, width, height, pixels, log),
                             daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield log
    finally:
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
