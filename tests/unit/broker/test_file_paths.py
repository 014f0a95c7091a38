"""Paths into a desktop's home: every way out is refused before anything is touched."""

import io
import tarfile
import zipfile

import pytest

from broker.file_archives import tar_to_zip
from broker.file_paths import MAX_COMPONENT, BadPath, clean_path, parent_and_name


@pytest.mark.parametrize("raw", [
    "..", "../x", "a/../../x", "a/..", "./x", "a/./b", ".",             # dot components
    "/etc/passwd", "/", "//etc", "/home/user/x",                          # absolute
    "a//b", "a/", "",                                                      # empty components (files)
    "a\x00b", "\x00", "a/\x00/b",                                          # NUL
    "a\nb", "a\rb", "x\x1b[2J", "\x7f",                                    # control characters
    "..\\x", "a\\..\\b", "\\etc\\passwd",                                  # backslashes
    "%2e%2e", "%2e%2e/x", "a/%2E%2E/b", "%2e", "a%2fb", "%2F", "%00", "a%5cb",  # encoded once more
    "%252e%252e", "%25252e%25252e/x", "x%252fy",                           # encoded twice, thrice
    "~", "~/x", "~root/x",                                                 # tilde
    "a" * (MAX_COMPONENT + 1), "é" * 128,                                  # over-long names (bytes)
    "a/" * 2001,                                                           # over-long paths
])
def test_every_escape_and_non_path_is_refused(raw):
    with pytest.raises(BadPath):
        clean_path(raw)


@pytest.mark.parametrize("raw", ["..", "/etc", "a//", "%2e%2e/", "../", "a/../"])
def test_folders_are_refused_the_same_way(raw):
    with pytest.raises(BadPath):
        clean_path(raw, folder=True)


@pytest.mark.parametrize("raw, clean", [
    ("notes.txt", "notes.txt"), ("a/b/c.dat", "a/b/c.dat"), ("..hidden", "..hidden"), ("a..b", "a..b"),
    ("...", "..."), (".bashrc", ".bashrc"), ("with space/x y", "with space/x y"), ("ünïcödé/ファイル", "ünïcödé/ファイル"),
    ("100%.txt", "100%.txt"), ("50%25off", "50%25off"), ("a" * MAX_COMPONENT, "a" * MAX_COMPONENT),
])
def test_ordinary_names_pass_unchanged(raw, clean):
    assert clean_path(raw) == clean


def test_folders_take_the_root_and_a_trailing_slash():
    assert clean_path("", folder=True) == "" and clean_path("/", folder=True) == ""
    assert clean_path("a/b/", folder=True) == "a/b" and clean_path("a/b", folder=True) == "a/b"
    assert parent_and_name("a/b/c") == ("a/b", "c") and parent_and_name("c") == ("", "c")


def test_a_tar_stream_becomes_a_zip_with_the_same_files_a_chunk_at_a_time():
    buffer = io.BytesIO()
    files = {"top/a.txt": b"alpha", "top/sub/b.bin": bytes(range(256)) * 5000, "top/empty.txt": b""}
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("top", "top/sub", "top/emptydir"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o640
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("top/out")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    raw = buffer.getvalue()
    chunks = list(tar_to_zip(iter([raw[i:i + 1000] for i in range(0, len(raw), 1000)])))
    assert len(chunks) > 1
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")} == files
        assert "top/emptydir/" in archive.namelist() and "top/out" not in archive.namelist()
        assert (archive.getinfo("top/a.txt").external_attr >> 16) & 0o777 == 0o640
