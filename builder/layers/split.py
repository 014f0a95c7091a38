"""Assign every entry of the added tree to a package group or to ``meta``.

* regular files, symlinks and hardlinks owned by packages go to the group of their first owner by
  name (a file owned by several packages lands once, whatever the install order); a regular file
  whose mtime differs from its package header was changed after install (by a scriptlet) and goes
  to ``meta``, as do ``%ghost`` paths and every path no package owns (rpmdb, dnf state, lock file,
  launchers);
* directories owned by packages go to the group of every owner;
* every layer also carries the ancestors of its entries (one header for a directory in every layer:
  mode and owner from the built tree, a fixed mtime), so the stacking order never changes a result;
* whiteouts (paths the build deleted from the base) go to ``meta``: deleting at the top is the same
  as deleting at the bottom, for a path that no layer of ours adds again.
"""

from __future__ import annotations

from builder.layers.layout import META, Layout
from builder.layers.owners import Owners
from builder.layers.tree import Entry, Tree, ancestors


def package_sizes(tree: Tree, owners: Owners) -> dict[str, int]:
    """Bytes of regular files each package contributes to the tree (every installed package listed)."""
    sizes = {name: 0 for name in owners.packages}
    for path, entry in tree.entries.items():
        names = owners.owners_of(path)
        if names and entry.info.isreg():
            sizes[names[0]] += entry.info.size
    return sizes


def split(tree: Tree, owners: Owners, layout: Layout) -> dict[str, list[Entry]]:
    """``group id → entries`` (sorted by path) for every group of ``layout`` and ``META``."""
    group_of = layout.group_of()
    out: dict[str, set[str]] = {g.id: set() for g in layout.groups}
    meta: set[str] = set()
    for path, entry in tree.entries.items():
        names = [n for n in owners.owners_of(path) if n in group_of]
        if not names:
            meta.add(path)
        elif entry.is_dir:
            for name in names:
                out[group_of[name]].add(path)
        elif entry.info.isreg() and not any(owners.mtimes.get((n, "/" + path)) == int(entry.info.mtime)
                                             for n in names):
            meta.add(path)  # modified after rpm wrote it
        else:
            out[group_of[names[0]]].add(path)
    covered = set()
    for paths in out.values():
        for path in list(paths):
            paths.update(ancestors(path))
        covered.update(p for p in paths if tree.entry_or_dir(p).is_dir)
    meta = {p for p in meta if not (tree.entries[p].is_dir and p in covered)}
    meta.update(tree.whiteouts)
    for path in list(meta):
        meta.update(ancestors(path))
    result = {gid: [tree.entry_or_dir(p) for p in sorted(paths)] for gid, paths in out.items()}
    result[META] = [Entry(p, tree.whiteouts[p]) if p in tree.whiteouts else tree.entry_or_dir(p)
                    for p in sorted(meta)]
    return result
