"""Re-layer a built, verified environment image by package and push it through the registry API."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from asci.progress import LogSink
from builder import registry as registry_api
from builder.errors import DockerError
from builder.layers import image as images
from builder.layers import layout as layouts
from builder.layers.layout import META, Layout
from builder.layers.snapshot import snapshot
from builder.layers.shadow import blob_paths, fixups
from builder.layers.split import package_sizes, split
from builder.layers.tree import WHITEOUT, ancestors
from builder.layers.tarball import LayerBlob, write_layer


@dataclass
class Relayered:
    """What a re-layering pushed."""

    digest: str  # the manifest digest
    layout: Layout  # to record with the version: the next build reuses it
    layers: list[tuple[str, LayerBlob, list[str]]]  # (group id, blob, packages) above the base, bottom first
    actions: dict[str, str]  # blob digest -> exists | mounted | uploaded
    uploaded_bytes: int
    pull_bytes: int  # what a node holding the previous version downloads
    reused: int  # package layers whose diff_id equals the previous version's
    timings: dict[str, float] = field(default_factory=dict)
    listing: dict = field(default_factory=dict)  # the built image's listing (to compare with the pushed one)
    checked: set = field(default_factory=set)  # the paths the layers of ours decide (to compare)

    def lines(self) -> list[str]:
        lines = [f"layers: {len(self.layers)} above the base; {self.reused} package layers unchanged; "
                 f"uploaded {self.uploaded_bytes / 2**20:.1f} MiB; a node holding the previous version pulls "
                 f"{self.pull_bytes / 2**20:.1f} MiB"]
        for gid, blob, packages in self.layers:
            lines.append(f"  {gid:32} {blob.digest[:19]} {blob.size / 2**20:8.2f} MiB "
                         f"{self.actions.get(blob.digest, ''):8} {' '.join(packages)[:80]}")
        return lines


def base_in_registry(client, registry, base_tag: str, log: LogSink) -> tuple[str, dict, dict]:
    """``(repository, manifest, config)`` of the base image in the registry, pushed there when missing
    (once per base: environment repositories mount its layers)."""
    repository, tag = base_tag.rsplit(":", 1)
    if not registry_api.tag_exists(registry, repository, tag):
        from builder import docker_engine

        target = f"{registry.docker_push_host}/{repository}"
        log(f"pushing base image {base_tag} to {target}:{tag} (once per base)")
        client.images.get(base_tag).tag(target, tag)
        try:
            docker_engine.push_image(client, target, tag, log, auth=registry.auth)
        finally:
            client.images.remove(f"{target}:{tag}", noprune=True)
    content, _media, _digest = registry_api.get_manifest(registry, repository, tag)
    manifest = json.loads(content)
    if manifest.get("schemaVersion") != 2 or "layers" not in manifest:
        raise DockerError(f"base {repository}:{tag} in the registry is not a schema 2 image manifest")
    config = json.loads(registry_api.get_blob(registry, repository, manifest["config"]["digest"]))
    return repository, manifest, config


def relayer_image(client, registry, built_image: str, base_tag: str, repository: str, tag: str,
                  previous: Layout | None, *, created: str, max_layers: int = layouts.DEFAULT_MAX_LAYERS,
                  own_layer_min: int = layouts.OWN_LAYER_MIN, max_dead_ratio: float = 1.0, log: LogSink = print,
                  workdir: Path | None = None) -> Relayered:
    """Split ``built_image`` (built on ``base_tag``) into package layers and push it as ``repository:tag``.

    ``previous`` is the layout of the version nodes hold (the current one): its groups, blobs and
    stack order are kept where the packages are the same.
    """
    began = time.monotonic()
    timings: dict[str, float] = {}

    def mark(name: str) -> None:
        timings[name] = round(time.monotonic() - began - sum(timings.values()), 2)

    base_repository, base_manifest, base_config = base_in_registry(client, registry, base_tag, log)
    base_diff_ids = base_config["rootfs"]["diff_ids"]
    attrs = client.images.get(built_image).attrs
    if attrs["RootFS"]["Layers"][:len(base_diff_ids)] != base_diff_ids:
        raise DockerError(f"{built_image} is not built on {base_tag} as pushed to the registry")
    mark("base")
    spool = Path(tempfile.mkdtemp(prefix="asci-layers-", dir=workdir))
    try:
        tree, owners = snapshot(client, base_tag, built_image, spool)
        mark("snapshot")
        try:
            sizes = package_sizes(tree, owners)
            layout = layouts.assign(sizes, previous, max_layers=max_layers, base_layers=len(base_diff_ids),
                                    own_layer_min=own_layer_min)
            groups = split(tree, owners, layout)
            recorded = {g.diff_id: g for g in (previous.groups if previous else []) if g.diff_id and g.digest}
            if previous and previous.meta.get("diff_id"):
                recorded.setdefault(previous.meta["diff_id"], layouts.Group(META, [], previous.meta["diff_id"],
                                                                            previous.meta["digest"],
                                                                            previous.meta["size"]))
            blobs: dict[str, LayerBlob] = {}
            reused = 0

            def write(gid: str, entries) -> LayerBlob:
                probe = write_layer(entries)
                old = recorded.get(probe.diff_id)
                if old is not None and registry_api.blob_exists(registry, repository, old.digest):
                    return LayerBlob(probe.diff_id, old.digest, old.size, probe.raw_size, None)
                return write_layer(entries, spool / f"{len(blobs)}.tar.gz")

            for group in layout.groups:
                blobs[group.id] = write(group.id, groups.get(group.id) or [])
                reused += blobs[group.id].path is None
            live_paths = {gid: {e.path for e in entries} for gid, entries in groups.items()}
            dead_paths: dict[str, set[str] | None] = {}

            def paths_of(layer) -> set[str] | None:
                if not layer.dead:
                    return live_paths[layer.id]
                if layer.digest not in dead_paths:
                    dead_paths[layer.digest] = blob_paths(registry, repository, layer.digest)
                return dead_paths[layer.digest]

            def fixup_bytes(layers) -> int | None:
                found = fixups(layers, paths_of, tree)
                return None if found is None else sum(e.info.size for e in found if e.info.isreg())

            chosen = layouts.arrange(layout, {gid: (b.diff_id, b.digest, b.size) for gid, b in blobs.items()},
                                     previous, max_dead_ratio=max_dead_ratio, fixup_bytes=fixup_bytes)
            meta_entries = {e.path: e for e in groups[META]}
            if chosen.dead_bytes:
                for entry in fixups(chosen.layers, paths_of, tree) or []:
                    meta_entries[entry.path] = entry
                    for parent in ancestors(entry.path):
                        meta_entries.setdefault(parent, tree.entry_or_dir(parent))
            meta = write(META, [meta_entries[p] for p in sorted(meta_entries)])
            # Every path a layer of ours holds or deletes: the rest of the image is the base's layers.
            decided = set(meta_entries) | {p for paths in live_paths.values() for p in paths}
            decided |= {p for paths in dead_paths.values() if paths for p in paths}
            decided = {p.replace(WHITEOUT, "", 1) if p.rsplit("/", 1)[-1].startswith(WHITEOUT) else p
                       for p in decided}
            log(f"layer stack: {chosen.name} ({len(chosen.layers)} layers, {reused} package layers unchanged, "
                f"{chosen.dead_bytes / 2**20:.1f} MiB shadowed)")
            mark("write")
        finally:
            tree.close()
        layout.meta = {"diff_id": meta.diff_id, "digest": meta.digest, "size": meta.size}
        by_digest = {b.digest: b for b in blobs.values()}
        packages = {g.id: g.packages for g in layout.groups}
        ordered = [(("shadowed " if layer.dead else "") + layer.id,
                    by_digest.get(layer.digest) if not layer.dead else
                    LayerBlob(layer.diff_id, layer.digest, layer.size), [] if layer.dead else packages[layer.id])
                   for layer in chosen.layers] + [(META, meta, [])]
        config = images.build_config(base_config, images.runtime_config(attrs.get("Config")),
                                     [(b.diff_id, f"asci {gid}: {' '.join(p)}".strip()) for gid, b, p in ordered],
                                     created)
        base_blobs = [LayerBlob(d, layer["digest"], layer["size"])
                      for d, layer in zip(base_diff_ids, base_manifest["layers"])]
        all_blobs = base_blobs + [b for _, b, _ in ordered]
        sources = [(b.digest, b.size, b.path) for b in all_blobs]
        sources.append((images.digest_of(config), len(config), config))
        seen, unique = set(), []
        for item in sources:
            if item[0] not in seen:
                seen.add(item[0])
                unique.append(item)
        actions = registry_api.push_blobs(registry, repository, unique, log, mount_from=[base_repository])
        manifest = images.build_manifest(config, all_blobs)
        digest = registry_api.put_manifest(registry, repository, tag, manifest, images.MEDIA_MANIFEST)
        mark("push")
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    uploaded = sum(size for d, size, _src in unique if actions.get(d) == "uploaded")
    return Relayered(digest, layout, ordered, actions, uploaded, layouts.pull_cost(previous, layout), reused, timings,
                     tree.stats, decided)
