"""Shadowed layers: a changed package's previous layer kept in place (so nodes reuse every layer above
it) and overridden. The new layer of the package on top overrides the paths it still has; ``meta``
(the top layer) re-asserts every other path whose topmost copy is in a dead layer: the current entry
(content the build added, or a directory header), or a whiteout when the path is gone. A base file
that a dead layer shadows cannot be restored without reading the base: that stack is refused."""

from __future__ import annotations

import tarfile
import zlib

from builder import registry as registry_api
from builder.layers.layout import Layer
from builder.layers.tree import Entry, Tree, ancestors, norm, whiteout_header

CHUNK = 1 << 20


def blob_paths(registry, repository: str, digest: str) -> set[str] | None:
    """The paths of a gzip layer blob in the registry (None when the blob is not there)."""
    if not registry_api.blob_exists(registry, repository, digest):
        return None
    response = registry_api.open_blob(registry, repository, digest)
    with response:
        raw = _Gunzip(response.iter_content(CHUNK))
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            return {norm(member.name) for member in tar if norm(member.name)}


class _Gunzip:
    """A read-only file of the decompressed bytes of an iterator of gzip chunks."""

    def __init__(self, chunks):
        self.chunks, self.inflate, self.buffer = iter(chunks), zlib.decompressobj(16 + zlib.MAX_WBITS), b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.buffer += self.inflate.flush()
                break
            self.buffer += self.inflate.decompress(chunk)
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def fixups(layers: list[Layer], paths_of, tree: Tree) -> list[Entry] | None:
    """What ``meta`` must hold so that ``layers`` (bottom first) give the built tree; ``paths_of(layer)``
    gives a layer's paths (None: unknown). None when a dead layer shadows a path that cannot be restored."""
    top: dict[str, int] = {}
    for index, layer in enumerate(layers):
        paths = paths_of(layer)
        if paths is None:
            return None
        for path in paths:
            top[path] = index
    built = tree.stats
    entries = []
    for path, index in sorted(top.items()):
        if not layers[index].dead:
            continue
        if path in tree.entries:
            entries.append(tree.entries[path])
        elif path in built and built[path].is_dir:
            entries.append(tree.entry_or_dir(path))
        elif path not in built:
            if not any(a not in built for a in ancestors(path)):
                marker, info = whiteout_header(path)
                entries.append(Entry(marker, info))
        else:
            return None  # a base file under a dead layer: its content is not at hand
    return entries
