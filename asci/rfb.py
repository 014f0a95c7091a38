"""A minimal RFB (VNC) client: handshake with VNC authentication and one framebuffer grab.

Used to prove a desktop is really up (tests, the CI smoke gate, the benchmarks): it speaks RFB 3.8
to the server, authenticates with the session's password (DES challenge-response), asks for the
whole screen in Raw encoding and reports how many distinct colours it holds.

A *target* is where the server listens: the path of a Unix socket (how desktops serve VNC: one
socket per session, reachable only by the platform) or a ``(host, port)`` pair.
``vncpasswd_file`` writes the password file TigerVNC reads (what ``vncpasswd -f`` writes).
"""

from __future__ import annotations

import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass

from Crypto.Cipher import DES

from asci.errors import AsciError

RAW_ENCODING = 0
VNC_AUTH = 2
SUN_PATH_MAX = 107  # bytes of a Unix socket path connect() accepts (sun_path less its NUL)
# The fixed key vncpasswd obfuscates passwords with (d3des bit order, as TigerVNC's source has it).
_VNCPASSWD_KEY = bytes([23, 82, 107, 6, 35, 78, 88, 7])


class RFBError(AsciError):
    """The VNC server could not be reached, refused us, or spoke something else."""


@dataclass
class Framebuffer:
    """One full-screen capture: size, server name and 32-bit pixels (BGRX)."""

    width: int
    height: int
    name: str
    pixels: bytes

    def distinct_colours(self, limit: int = 4096) -> int:
        """How many different pixel values appear (stops counting at ``limit``)."""
        seen: set[bytes] = set()
        view = memoryview(self.pixels)
        for offset in range(0, len(view), 4 * 7):  # sample every 7th pixel
            seen.add(bytes(view[offset:offset + 3]))
            if len(seen) >= limit:
                break
        return len(seen)

    def is_drawn(self, minimum_colours: int = 8) -> bool:
        """True when the screen is more than a blank or single-colour surface."""
        return self.distinct_colours() >= minimum_colours

    def scaled(self, max_width: int) -> "Framebuffer":
        """The capture shrunk (every n-th pixel of every n-th row) to at most ``max_width`` pixels wide."""
        step = max(1, -(-self.width // max(1, max_width)))
        if step == 1:
            return self
        width, stride = len(range(0, self.width, step)), self.width * 4
        out = bytearray()
        for row in range(0, self.height, step):
            line = self.pixels[row * stride:(row + 1) * stride]
            pixels = bytearray(width * 4)
            for channel in range(4):
                pixels[channel::4] = line[channel::4 * step]
            out += pixels
        return Framebuffer(width, len(range(0, self.height, step)), self.name, bytes(out))

    def to_png(self) -> bytes:
        """The capture as a PNG image (a test artefact, a desktop's thumbnail)."""
        rows = bytearray()
        stride = self.width * 4
        for row in range(self.height):
            line = self.pixels[row * stride:(row + 1) * stride]
            rgb = bytearray(self.width * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = line[2::4], line[1::4], line[0::4]
            rows += b"\x00" + rgb

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))

        header = struct.pack("!IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
                + chunk(b"IEND", b""))


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(min(count - len(chunks), 1 << 20))
        if not chunk:
            raise RFBError("VNC server closed the connection")
        chunks += chunk
    return bytes(chunks)


def _reversed_bits(data: bytes) -> bytes:
    return bytes(int(f"{byte:08b}"[::-1], 2) for byte in data)


def _des_key(password: str) -> bytes:
    # VNC uses each key byte with its bits reversed.
    return _reversed_bits(password.encode("latin-1")[:8].ljust(8, b"\0"))


def vncpasswd_file(password: str, view_password: str = "") -> bytes:
    """The bytes ``vncpasswd -f`` writes for ``password`` (and a view-only password): 8 or 16 bytes.

    Only the first 8 characters count (the protocol's limit); TigerVNC's ``-PasswordFile`` reads it.
    """
    if not password:
        raise ValueError("a VNC password file needs a password")
    cipher = DES.new(_reversed_bits(_VNCPASSWD_KEY), DES.MODE_ECB)
    data = cipher.encrypt(password.encode("latin-1")[:8].ljust(8, b"\0"))
    if view_password:
        data += cipher.encrypt(view_password.encode("latin-1")[:8].ljust(8, b"\0"))
    return data


def describe(target) -> str:
    """``target`` for messages: the socket path, or host:port."""
    return f"{target[0]}:{target[1]}" if isinstance(target, tuple) else os.fspath(target)


def connect(target, timeout: float = 10.0) -> socket.socket:
    """A stream socket connected to ``target`` (a Unix socket path, or ``(host, port)``).

    A socket path longer than ``sun_path`` allows is reached through a descriptor of its folder
    (``/proc/self/fd/N/name``), so a deep data directory still works.
    """
    if isinstance(target, tuple):
        return socket.create_connection(target, timeout=timeout)
    path = os.fspath(target)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if len(os.fsencode(path)) <= SUN_PATH_MAX:
            sock.connect(path)
        else:
            folder = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY)
            try:
                sock.connect(f"/proc/self/fd/{folder}/{os.path.basename(path)}")
            finally:
                os.close(folder)
    except OSError:
        sock.close()
        raise
    return sock


def vnc_response(password: str, challenge: bytes) -> bytes:
    """The VNC authentication response to a 16-byte challenge."""
    return DES.new(_des_key(password), DES.MODE_ECB).encrypt(challenge)


def _handshake(sock: socket.socket, password: str) -> None:
    version = _recv_exact(sock, 12)
    if not version.startswith(b"RFB "):
        raise RFBError(f"not a VNC server (greeting {version!r})")
    sock.sendall(b"RFB 003.008\n")
    (count,) = struct.unpack("!B", _recv_exact(sock, 1))
    if count == 0:
        (length,) = struct.unpack("!I", _recv_exact(sock, 4))
        raise RFBError(f"VNC server refused: {_recv_exact(sock, length).decode(errors='replace')}")
    types = _recv_exact(sock, count)
    if VNC_AUTH not in types:
        raise RFBError(f"VNC server does not offer password authentication (offers {list(types)})")
    sock.sendall(struct.pack("!B", VNC_AUTH))
    sock.sendall(vnc_response(password, _recv_exact(sock, 16)))
    (result,) = struct.unpack("!I", _recv_exact(sock, 4))
    if result != 0:
        try:
            (length,) = struct.unpack("!I", _recv_exact(sock, 4))
            reason = _recv_exact(sock, length).decode(errors="replace")
        except RFBError:
            reason = "authentication failed"
        raise RFBError(f"VNC authentication failed: {reason}")


def _read_update(sock: socket.socket, width: int, height: int, pixels: bytearray) -> None:
    while True:
        (message_type,) = struct.unpack("!B", _recv_exact(sock, 1))
        if message_type == 0:
            break
        if message_type == 2:  # bell
            continue
        if message_type == 3:  # server cut text
            _recv_exact(sock, 3)
            (length,) = struct.unpack("!I", _recv_exact(sock, 4))
            _recv_exact(sock, length)
            continue
        raise RFBError(f"unexpected server message type {message_type}")
    _pad, rectangles = struct.unpack("!BH", _recv_exact(sock, 3))
    for _ in range(rectangles):
        x, y, w, h, encoding = struct.unpack("!HHHHi", _recv_exact(sock, 12))
        if encoding != RAW_ENCODING:
            raise RFBError(f"server sent encoding {encoding} we did not ask for")
        data = _recv_exact(sock, w * h * 4)
        for row in range(h):
            start = ((y + row) * width + x) * 4
            pixels[start:start + w * 4] = data[row * w * 4:(row + 1) * w * 4]


def _open(target, password: str, timeout: float) -> tuple[socket.socket, int, int, str]:
    """Connect, authenticate, share the session and ask for 32-bit Raw pixels: (sock, width, height, name)."""
    return open_on(connect(target, timeout), password, timeout)


def open_on(sock: socket.socket, password: str, timeout: float = 10.0) -> tuple[socket.socket, int, int, str]:
    """:func:`_open` on a stream that is already connected (a relay through a node's agent, say); the
    stream is closed when the handshake fails."""
    try:
        sock.settimeout(timeout)
        _handshake(sock, password)
        sock.sendall(b"\x01")  # shared session
        width, height = struct.unpack("!HH", _recv_exact(sock, 4))
        _recv_exact(sock, 16)  # server pixel format: we set our own below
        (name_length,) = struct.unpack("!I", _recv_exact(sock, 4))
        name = _recv_exact(sock, name_length).decode(errors="replace")
        # 32 bpp, depth 24, little endian, true colour, RGB max 255, shifts 16/8/0
        pixel_format = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        sock.sendall(struct.pack("!B3x", 0) + pixel_format)
        sock.sendall(struct.pack("!BxHi", 2, 1, RAW_ENCODING))
    except BaseException:
        sock.close()
        raise
    return sock, width, height, name


def _request(sock: socket.socket, width: int, height: int, incremental: bool) -> None:
    sock.sendall(struct.pack("!BBHHHH", 3, int(incremental), 0, 0, width, height))


def capture(target, password: str, timeout: float = 10.0) -> Framebuffer:
    """Authenticate at ``target`` (socket path or ``(host, port)``) and grab the whole framebuffer once."""
    where = describe(target)
    try:
        sock, width, height, name = _open(target, password, timeout)
    except socket.timeout:
        raise RFBError(f"VNC server {where} did not answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise RFBError(f"cannot connect to VNC server {where}: {exc}") from None
    with sock:
        try:
            _request(sock, width, height, incremental=False)
            pixels = bytearray(width * height * 4)
            _read_update(sock, width, height, pixels)
        except socket.timeout:
            raise RFBError(f"VNC server {where} did not answer within {timeout:.0f} s") from None
        except OSError as exc:
            raise RFBError(f"VNC connection to {where} failed: {exc}") from None
    return Framebuffer(width, height, name, bytes(pixels))


def wait_for_desktop(target, password: str, timeout: float = 60.0, minimum_colours: int = 8,
                     interval: float = 0.1) -> Framebuffer:
    """Wait until ``target`` shows a drawn desktop (at least ``minimum_colours`` colours); RFBError at ``timeout``.

    One connection follows the screen as a viewer does: a full update, then incremental ones as the
    server sends changes, each checked as it arrives. A server that is not up yet (or drops the
    connection) is tried again every ``interval`` seconds; a wrong password fails at once.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    where = describe(target)
    while time.monotonic() < deadline:
        try:
            sock, width, height, name = _open(target, password, max(0.5, min(10.0, deadline - time.monotonic())))
        except RFBError as exc:
            if "authentication failed" in str(exc):
                raise
            last_error = str(exc)
        except OSError as exc:
            last_error = f"cannot connect to VNC server {where}: {exc}"
        else:
            with sock:
                pixels = bytearray(width * height * 4)
                incremental = False
                try:
                    while True:
                        _request(sock, width, height, incremental)
                        sock.settimeout(max(0.05, deadline - time.monotonic()))
                        _read_update(sock, width, height, pixels)
                        frame = Framebuffer(width, height, name, bytes(pixels))
                        if frame.is_drawn(minimum_colours):
                            return frame
                        last_error = f"screen still blank ({frame.distinct_colours()} colours)"
                        incremental = True
                except (RFBError, OSError) as exc:  # a timeout at the deadline, or the server went away
                    if not isinstance(exc, socket.timeout):
                        last_error = str(exc)
        time.sleep(interval)
    raise RFBError(f"no drawn desktop on {where} after {timeout:.0f} s: {last_error}")
