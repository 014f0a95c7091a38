"""builder.layers on synthetic trees: assignment, ancestors, scriptlet-changed and ghost files,
whiteouts, hardlinks, xattrs, deterministic bytes, layout reuse, stack order and the budget."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from builder.layers import layout as layouts
from builder.layers.owners import QUERY_COMMAND, SEPARATOR, parse_owners
from builder.layers.split import package_sizes, split
from builder.layers.tarball import DIR_MTIME, write_layer
from builder.layers.tree import Stat, compare_listings, diff_listings, load_tree, parse_listing
from builder.layers.layout import META


def _stat(kind="f", mode=0o644, uid=0, gid=0, size=0, mtime="1000.0000000000", ctime="1.0", link=""):
    return Stat(kind, mode, uid, gid, size, mtime, ctime, link)


ITEMS = [  # (path, kind, options): what a dnf RUN adds; directories carry the build time
    ("usr", "dir", {}), ("usr/bin", "dir", {}),
    ("usr/bin/a", "file", {"data": b"#!/bin/sh\n", "mode": 0o755}),
    ("usr/bin/a-link", "sym", {"link": "a"}),
    ("usr/share", "dir", {}), ("usr/share/common.txt", "file", {"data": b"shared\n"}),
    ("opt", "dir", {}), ("opt/p", "dir", {}),
    ("opt/p/a.bin", "file", {"data": b"A" * 5000}), ("opt/p/b.bin", "file", {"data": b"B" * 7000}),
    ("opt/p/h2", "file", {"data": b"same inode\n"}), ("opt/p/h1", "hard", {"link": "opt/p/h2"}),
    ("opt/p/secret", "file", {"data": b"s\n", "mode": 0o640, "uid": 1000, "gid": 1000}),
    ("opt/p/capable", "file", {"data": b"c\n", "mode": 0o755,
                               "pax": {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20"}}),
    ("etc", "dir", {}), ("etc/b.conf", "file", {"data": b"edited by a scriptlet\n", "mtime": 7777}),
    ("var", "dir", {}), ("var/lib", "dir", {}), ("var/lib/rpm", "dir", {}),
    ("var/lib/rpm/rpmdb.sqlite", "file", {"data": b"db", "mtime": 7777}),
    ("var/log", "dir", {}), ("var/log/b.log", "file", {"data": b"ghost made real\n", "mtime": 7777}),
]


def make_tar(path: Path, dir_mtime: int, reverse: bool = False) -> Path:
    items = ITEMS[::-1] if reverse else list(ITEMS)
    if reverse:  # a hardlink must follow its target in a tar
        items.sort(key=lambda item: item[0] == "opt/p/h1")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, kw in items:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid = kw.get("mode", 0o755 if kind == "dir" else 0o644), kw.get("uid", 0), \
                kw.get("gid", 0)
            info.mtime = kw.get("mtime", dir_mtime if kind == "dir" else 1000)
            info.pax_headers = dict(kw.get("pax") or {})
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("sym", "hard"):
                info.type, info.linkname = (tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE), kw["link"]
                tar.addfile(info)
            else:
                info.size = len(kw["data"])
                tar.addfile(info, io.BytesIO(kw["data"]))
    return path


def owners():
    files = [("pkg-a", 0, "/opt/p"), ("pkg-b", 0, "/opt/p"), ("pkg-a", 0, "/opt/p/a.bin"), ("pkg-a", 0, "/opt/p/h1"),
             ("pkg-a", 0, "/opt/p/h2"), ("pkg-a", 0, "/opt/p/secret"), ("pkg-a", 0, "/opt/p/capable"),
             ("pkg-a", 0, "/usr/bin/a"), ("pkg-a", 0, "/usr/bin/a-link"), ("pkg-a", 0, "/usr/share/common.txt"),
             ("pkg-b", 0, "/usr/share/common.txt"), ("pkg-b", 0, "/opt/p/b.bin"), ("pkg-b", 0, "/etc/b.conf"),
             ("pkg-b", 64, "/var/log/b.log")]
    text = "pkg-a\t0:1-1.noarch\npkg-b\t0:1-1.noarch\n" + SEPARATOR + "\n" + \
        "".join(f"{n}\t{flags}\t1000\t{p}\n" for n, flags, p in files)
    return parse_owners(text)


def tree_of(tmp: Path, dir_mtime: int, reverse: bool = False, deleted=("etc/old.conf",)):
    tar = make_tar(tmp / f"t-{dir_mtime}-{reverse}.tar", dir_mtime, reverse)
    changed = [name for name, _kind, _kw in ITEMS]
    from builder.layers.tree import Changes

    return load_tree(tar, Changes(sorted(changed), list(deleted)), {"usr": _stat("d", 0o755)})


def relayer(tmp: Path, dir_mtime: int, reverse: bool = False, previous=None):
    tree = tree_of(tmp, dir_mtime, reverse)
    own = owners()
    layout = layouts.assign(package_sizes(tree, own), previous, own_layer_min=5000)
    groups = split(tree, own, layout)
    blobs = {gid: write_layer(entries, tmp / f"{gid.replace(':', '_')}-{dir_mtime}-{reverse}.tgz")
             for gid, entries in groups.items() if entries}
    return tree, layout, groups, blobs


def names(entries):
    return [e.path for e in entries]


def test_split_assigns_owned_unowned_shared_and_whiteouts(tmp_path):
    _tree, layout, groups, _ = relayer(tmp_path, 5000)
    a = names(groups["pkg:pkg-a"])
    b = names(groups[layout.group_of()["pkg-b"]])
    meta = names(groups[META])
    assert "opt/p/a.bin" in a and "opt/p/h1" in a and "usr/bin/a-link" in a
    assert "usr/share/common.txt" in a and "usr/share/common.txt" not in b  # first owner by name
    assert "opt/p" in a and "opt/p" in b  # a shared directory: in both
    assert "usr" in a and "usr/share" in a  # ancestors carried
    assert "etc/b.conf" not in b and "etc/b.conf" in meta  # changed after install (mtime != header)
    assert "var/log/b.log" in meta  # %ghost
    assert "var/lib/rpm/rpmdb.sqlite" in meta  # unowned
    assert "opt" not in meta  # covered by package layers
    assert "etc/.wh.old.conf" in meta  # a deleted base path: whiteout at the top


def test_same_packages_give_same_digests_whatever_the_build_time_and_tar_order(tmp_path):
    _, _, _, one = relayer(tmp_path, 5000)
    _, _, _, two = relayer(tmp_path, 9999, reverse=True)
    for gid in one:
        assert (one[gid].diff_id, one[gid].digest) == (two[gid].diff_id, two[gid].digest), gid


def test_layer_headers_are_normalized_and_hardlinks_kept_within_a_layer(tmp_path):
    _, _, _, blobs = relayer(tmp_path, 5000)
    with tarfile.open(blobs["pkg:pkg-a"].path, "r:gz") as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
        order = [m.name.rstrip("/") for m in tar.getmembers()]
    assert order == sorted(order, key=lambda p: p.split("/"))
    assert members["opt/p"].mtime == DIR_MTIME and members["opt/p/a.bin"].mtime == 1000
    assert members["usr"].mode == 0o755  # an ancestor header: mode and owner from the built listing
    assert members["opt/p/h1"].isreg() and members["opt/p/h2"].islnk() and members["opt/p/h2"].linkname == "opt/p/h1"
    assert (members["opt/p/secret"].uid, members["opt/p/secret"].mode) == (1000, 0o640)
    assert members["opt/p/capable"].pax_headers["SCHILY.xattr.security.capability"] == "\x01\x00\x00\x02\x00\x20"
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert blobs["pkg:pkg-a"].path.read_bytes()[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0


def test_a_hardlink_whose_target_is_in_another_layer_becomes_a_file(tmp_path):
    tree = tree_of(tmp_path, 5000)
    own = owners()
    own.paths["/opt/p/h2"] = ["pkg-b"]
    own.mtimes[("pkg-b", "/opt/p/h2")] = 1000
    layout = layouts.assign(package_sizes(tree, own), None, own_layer_min=1)
    groups = split(tree, own, layout)
    blob = write_layer(groups["pkg:pkg-a"], tmp_path / "a.tgz")
    with tarfile.open(blob.path, "r:gz") as tar:
        h1 = tar.getmember("opt/p/h1")
        assert h1.isreg() and tar.extractfile(h1).read() == b"same inode\n"


def test_probe_pass_gives_the_same_diff_id_without_writing(tmp_path):
    tree = tree_of(tmp_path, 5000)
    groups = split(tree, owners(), layouts.assign({"pkg-a": 1, "pkg-b": 1}, None))
    for entries in groups.values():
        assert write_layer(entries).diff_id == write_layer(entries, tmp_path / "x").diff_id


def test_layout_reuse_new_package_reserved_and_removed_package():
    first = layouts.assign({"big1": 50, "big2": 40, "s1": 1, "s2": 2}, None, own_layer_min=10)
    assert [g.id for g in first.groups][:2] == ["pkg:big1", "pkg:big2"]
    second = layouts.assign({"big1": 50, "s1": 1, "s2": 2, "s3": 1, "big3": 30}, first, own_layer_min=10)
    ids = [g.id for g in second.groups]
    assert "pkg:big2" not in ids  # a removed package's group is gone
    assert "pkg:big1" in ids and "pkg:big3" in ids  # a new large package gets its own layer
    assert second.group_of()["s3"] == layouts.NEW  # a new small one: the reserved group
    assert second.group_of()["s1"] == first.group_of()["s1"]  # known packages keep their group


def test_layout_budget_counts_base_and_meta():
    sizes = {f"p{i:02}": 100 + i for i in range(30)}
    layout = layouts.assign(sizes, None, max_layers=12, base_layers=4, own_layer_min=10, small_groups=2)
    assert len(layout.groups) + 4 + 1 <= 12
    assert sorted(p for g in layout.groups for p in g.packages) == sorted(sizes)
    more = dict(sizes, **{f"q{i}": 500 for i in range(5)})
    again = layouts.assign(more, layout, max_layers=12, base_layers=4, own_layer_min=10)
    assert len(again.groups) + 4 + 1 <= 12
    assert sorted(p for g in again.groups for p in g.packages) == sorted(more)
    with pytest.raises(ValueError):
        layouts.assign(sizes, None, max_layers=6, base_layers=4)


def _laid(sizes, previous, diff_ids, max_dead_ratio=0.0, fixup_bytes=lambda layers: 0):
    layout = layouts.assign(sizes, previous, own_layer_min=10)
    chosen = layouts.arrange(layout, {g.id: (diff_ids[g.id], "sha256:" + diff_ids[g.id], sizes[g.packages[0]])
                                      for g in layout.groups}, previous, max_dead_ratio=max_dead_ratio,
                             fixup_bytes=fixup_bytes)
    layout.meta = {"size": 1}
    return layout, chosen


def test_without_shadowing_the_unchanged_prefix_stays_and_changed_groups_go_on_top():
    sizes = {"a": 40, "b": 30, "c": 20, "d": 10}
    v1, _ = _laid(sizes, None, {"pkg:a": "a1", "pkg:b": "b1", "pkg:c": "c1", "pkg:d": "d1"})
    assert [g.id for g in v1.groups] == ["pkg:a", "pkg:b", "pkg:c", "pkg:d"]  # largest lowest
    v2, chosen = _laid(sizes, v1, {"pkg:a": "a1", "pkg:b": "b2", "pkg:c": "c1", "pkg:d": "d1"})
    assert chosen.name == "truncate" and [g.id for g in v2.groups] == ["pkg:a", "pkg:c", "pkg:d", "pkg:b"]
    assert v2.by_id()["pkg:b"].changes == 1
    assert layouts.pull_cost(v1, v2) == 20 + 10 + 30 + 1  # chained store: c and d again, b, meta
    v3, _ = _laid(sizes, v2, {"pkg:a": "a1", "pkg:b": "b3", "pkg:c": "c1", "pkg:d": "d1"})
    assert [g.id for g in v3.groups] == ["pkg:a", "pkg:c", "pkg:d", "pkg:b"]
    assert layouts.pull_cost(v2, v3) == 30 + 1  # b again: only b and meta
    restored = layouts.Layout.from_json(v3.to_json())
    assert restored.to_json() == v3.to_json()


def test_shadowing_keeps_the_old_layer_in_place_within_the_dead_bytes_limit():
    sizes = {"a": 40, "b": 30, "c": 20, "d": 10}
    v1, _ = _laid(sizes, None, {"pkg:a": "a1", "pkg:b": "b1", "pkg:c": "c1", "pkg:d": "d1"})
    v2, chosen = _laid(sizes, v1, {"pkg:a": "a1", "pkg:b": "b2", "pkg:c": "c1", "pkg:d": "d1"}, max_dead_ratio=0.5)
    assert chosen.name == "shadow" and chosen.dead_bytes == 30
    assert [(layer["id"], layer["dead"]) for layer in v2.stack] == [
        ("pkg:a", False), ("pkg:b", True), ("pkg:c", False), ("pkg:d", False), ("pkg:b", False)]
    assert [g.id for g in v2.groups] == ["pkg:a", "pkg:c", "pkg:d", "pkg:b"]
    assert layouts.pull_cost(v1, v2) == 30 + 1  # only the new b and meta
    # a to change next would take the dead bytes past the limit: the stack is laid again above a
    v3, chosen = _laid(sizes, v2, {"pkg:a": "a2", "pkg:b": "b2", "pkg:c": "c1", "pkg:d": "d1"}, max_dead_ratio=0.5)
    assert chosen.name in ("truncate", "fresh") and chosen.dead_bytes == 0
    assert all(not layer["dead"] for layer in v3.stack)
    # a stack whose dead layers cannot be overridden is refused
    v4, chosen = _laid(sizes, v1, {"pkg:a": "a1", "pkg:b": "b2", "pkg:c": "c1", "pkg:d": "d1"}, max_dead_ratio=0.5,
                       fixup_bytes=lambda layers: None)
    assert chosen.name == "truncate"


def test_shadow_fixups_override_dead_paths(tmp_path):
    from builder.layers.shadow import fixups
    from builder.layers.layout import Layer

    tree = tree_of(tmp_path, 5000)
    tree.stats = {p: _stat("d" if e.is_dir else "f") for p, e in tree.entries.items()}
    tree.stats["usr/lib"] = _stat("d")
    tree.stats["usr/lib/from-base"] = _stat()
    layers = [Layer("pkg:a", "", "old", 1, dead=True), Layer("pkg:b", "", "b", 1), Layer("pkg:a", "", "new", 1)]
    paths = {"old": {"opt", "opt/p", "opt/p/a.bin", "opt/p/gone.bin", "usr", "usr/share", "usr/share/common.txt",
                     "usr/bin", "usr/bin/a"},
             "b": {"usr", "usr/share", "usr/share/common.txt"}, "new": {"opt", "opt/p", "opt/p/a.bin"}}
    found = {e.path: e for e in fixups(layers, lambda layer: paths[layer.digest], tree)}
    assert set(found) == {"opt/p/.wh.gone.bin", "usr/bin", "usr/bin/a"}  # others are topped by live layers
    assert found["usr/bin/a"].opener is not None and found["usr/bin"].is_dir
    paths["old"].add("usr/lib/from-base")  # a base file under a dead layer cannot be restored
    assert fixups(layers, lambda layer: paths[layer.digest], tree) is None


def test_owner_lines_with_tabs_are_refused_and_the_query_parses():
    with pytest.raises(ValueError):
        parse_owners("x\t0:1-1.noarch\n" + SEPARATOR + "\nx\t0\t1\t/a\tb\n")
    assert "rpm -qa" in QUERY_COMMAND


def test_listings_diff_changed_added_deleted_and_engine_paths():
    base = {"usr": _stat("d", ctime="1"), "usr/bin": _stat("d", ctime="1"), "usr/bin/x": _stat(ctime="1"),
            "old": _stat("d"), "old/f": _stat(), "etc/hosts": _stat(ctime="1"), "same": _stat()}
    built = {"usr": _stat("d", ctime="2"),  # touched directory, same mode and owner: not changed
             "usr/bin": _stat("d", mode=0o700), "usr/bin/x": _stat(ctime="2"), "usr/bin/new": _stat(),
             "etc/hosts": _stat(ctime="9"), "same": _stat(), "run/sock": _stat("s")}
    changes = diff_listings(base, built)
    assert changes.changed == ["usr/bin", "usr/bin/new", "usr/bin/x"]
    assert changes.deleted == ["old"]  # topmost only


def test_parse_listing_reads_any_name_and_compare_ignores_directory_times():
    raw = b"d\x00755\x000\x000\x004096\x001.5\x002.5\x00\x00/a\tb\n\x00" \
          b"l\x00777\x000\x000\x001\x003.25\x004.0\x00target\x00/a\tb\n/l\x00"
    listing = parse_listing(raw)
    assert listing["a\tb\n"].is_dir and listing["a\tb\n/l"].link == "target"
    other = dict(listing, **{"a\tb\n": _stat("d", 0o755, size=0, mtime="9", ctime="9")})
    assert compare_listings(listing, other) == []
    other["a\tb\n/l"] = Stat("l", 0o777, 0, 0, 1, "4.0", "4.0", "target")
    assert len(compare_listings(listing, other)) == 1
