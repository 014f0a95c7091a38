"""The layout of an environment's layers: which packages share a layer, and in which order.

Membership (:func:`assign`), as rpm-ostree's chunking does: without a previous layout, packages of
at least ``own_layer_min`` bytes get a layer each, largest first, as many as the budget allows; the
rest share a few groups chosen by a stable hash of the name, so a new small package changes one group.
With a previous layout every known package stays in its group (emptied groups disappear) and unknown
packages get their own layer when large, else the reserved group ``new``: a grouping change never
re-adds unchanged packages. The budget (``max_layers``, 64 like rpm-ostree's ``--max-layers``) counts
the base's layers and the ``meta`` layer; when the base grows, the two smallest groups merge.

Order (:func:`arrange`): Docker's layer store is chained (a layer is reused on a node only when every
layer below it is the same), so a new version keeps the previous stack and puts what changed on top;
a changed package's old layer stays in place, shadowed, until the dead bytes pass a limit; then the
stack is laid again from the first changed layer, stable groups lowest (those that changed least often).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

NEW = "new"  # reserved group for small packages unknown to the previous layout
META = "meta"  # the last layer: rpmdb, scriptlet output, lock, launchers, whiteouts
DEFAULT_MAX_LAYERS = 64
OWN_LAYER_MIN = 1024 * 1024
SMALL_GROUPS = 4


@dataclass
class Group:
    """A layer holding the files of ``packages``."""

    id: str
    packages: list[str]
    diff_id: str = ""  # sha256 of the uncompressed tar, recorded after the build
    digest: str = ""  # sha256 of the gzip blob pushed for that diff_id
    size: int = 0  # compressed size
    bytes: int = 0  # bytes of regular files (for planning)
    changes: int = 0  # versions in which this layer changed (for ordering)


@dataclass
class Layout:
    """Groups in stack order (bottom first, above the base; ``meta`` is not listed)."""

    groups: list[Group]
    max_layers: int = DEFAULT_MAX_LAYERS
    base_layers: int = 0
    meta: dict = field(default_factory=dict)  # diff_id, digest, size of the meta layer
    stack: list[dict] = field(default_factory=list)  # every layer in order, shadowed ones included (Layer)

    def group_of(self) -> dict[str, str]:
        return {p: g.id for g in self.groups for p in g.packages}

    def by_id(self) -> dict[str, Group]:
        return {g.id: g for g in self.groups}

    def to_json(self) -> dict:
        return {"max_layers": self.max_layers, "base_layers": self.base_layers, "meta": dict(self.meta),
                "groups": [asdict(g) for g in self.groups], "stack": [dict(item) for item in self.stack]}

    @classmethod
    def from_json(cls, data: dict | None) -> "Layout | None":
        if not data or not data.get("groups"):
            return None
        return cls([Group(**g) for g in data["groups"]], data.get("max_layers", DEFAULT_MAX_LAYERS),
                   data.get("base_layers", 0), dict(data.get("meta") or {}), list(data.get("stack") or []))


def budget_of(max_layers: int, base_layers: int) -> int:
    """How many package groups fit: the engine's limit less the base's layers and ``meta``."""
    budget = max_layers - base_layers - 1
    if budget < 2:
        raise ValueError(f"a budget of {max_layers} layers leaves no room above {base_layers} base layers")
    return budget


def assign(sizes: dict[str, int], previous: Layout | None, *, max_layers: int = DEFAULT_MAX_LAYERS,
           base_layers: int = 0, own_layer_min: int = OWN_LAYER_MIN, small_groups: int = SMALL_GROUPS) -> Layout:
    """Map every package of ``sizes`` (name → bytes) to a group within the budget (groups unordered)."""
    budget = budget_of(max_layers, base_layers)
    if previous is None:
        big = sorted((p for p, s in sizes.items() if s >= own_layer_min), key=lambda p: (-sizes[p], p))
        n_small = min(small_groups, max(1, budget - len(big)))
        big = big[:max(0, budget - n_small - 1)]  # one slot stays free for ``new``
        groups = [Group(f"pkg:{p}", [p]) for p in big]
        small: dict[int, list[str]] = {}
        for p in sorted(set(sizes) - set(big)):
            small.setdefault(zlib.crc32(p.encode()) % n_small, []).append(p)
        groups += [Group(f"small:{i}", small[i]) for i in sorted(small)]
    else:
        groups, known = [], set()
        for old in previous.groups:
            keep = [p for p in old.packages if p in sizes]
            known.update(keep)
            if keep:
                groups.append(Group(old.id, keep, old.diff_id, old.digest, old.size, changes=old.changes))
        reserved = next((g for g in groups if g.id == NEW), None)
        for p in sorted(set(sizes) - known, key=lambda p: (-sizes[p], p)):
            if sizes[p] >= own_layer_min and len(groups) + (reserved is None) < budget:
                groups.append(Group(f"pkg:{p}", [p]))
                continue
            if reserved is None:
                reserved = Group(NEW, [])
                groups.append(reserved)
            reserved.packages = sorted(reserved.packages + [p])
    for group in groups:
        group.bytes = sum(sizes.get(p, 0) for p in group.packages)
    while len(groups) > budget:  # the base grew: merge the two smallest groups
        groups.sort(key=lambda g: (g.bytes, g.id))
        a, b = groups[0], groups[1]
        groups = [Group(f"{a.id}+{b.id}", sorted(a.packages + b.packages), bytes=a.bytes + b.bytes,
                        changes=max(a.changes, b.changes))] + groups[2:]
    return Layout(groups, max_layers, base_layers)


@dataclass
class Layer:
    """One layer of the stack above the base (``meta`` aside): a live group's, or a shadowed one."""

    id: str
    diff_id: str
    digest: str
    size: int
    dead: bool = False  # superseded, kept in place so that nodes reuse every layer above it


def stack_of(layout: Layout | None) -> list[Layer]:
    """The recorded stack of a layout (older records: its groups, in order, all live)."""
    if layout is None:
        return []
    if layout.stack:
        return [Layer(**item) for item in layout.stack]
    return [Layer(g.id, g.diff_id, g.digest, g.size) for g in layout.groups]


@dataclass
class Arrangement:
    """A candidate stack: its layers, what a node holding the previous version downloads, dead bytes."""

    name: str
    layers: list[Layer]
    cost: int
    dead_bytes: int


def _ordered(groups: list[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: (g.changes, -g.bytes, g.id))


def arrange(layout: Layout, blobs: dict[str, tuple[str, str, int]], previous: Layout | None, *,
            max_dead_ratio: float = 1.0, fixup_bytes=lambda layers: 0) -> Arrangement:
    """Choose the stack of ``layout`` (whose groups now have ``blobs``: id → (diff_id, digest, size)).

    Docker's layer store is chained: a node reuses a layer only when every layer below it is the
    same. Three candidates, the cheapest for a node holding the previous version wins:

    * ``shadow``: the whole previous stack stays (a changed package's old layer stays in place,
      dead, its files overridden by the new layer on top or by ``meta``), the changed and new
      groups go on top: a node downloads only what changed;
    * ``truncate``: the previous stack up to its first changed layer stays, the rest is laid again,
      least often changed first (a package that changes keeps changing at the top);
    * ``fresh``: every group laid again, no dead layer.

    A candidate is allowed when its dead bytes stay within ``max_dead_ratio`` of the live bytes, it
    fits the layer budget, and ``fixup_bytes(layers)`` (what ``meta`` must carry to override the dead
    layers' files; None: they cannot be overridden) allows it. Updates the groups' change counts and
    records and sets ``layout.groups`` (live, in stack order) and ``layout.stack``.
    """
    before = previous.by_id() if previous else {}
    for group in layout.groups:
        diff_id, digest, size = blobs[group.id]
        old = before.get(group.id)
        if old is not None and old.diff_id and old.diff_id != diff_id:
            group.changes = old.changes + 1
        group.diff_id, group.digest, group.size = diff_id, digest, size
    current = layout.by_id()
    old_stack = stack_of(previous)

    def alive(layer: Layer) -> bool:
        group, old = current.get(layer.id), before.get(layer.id)
        return (not layer.dead and group is not None and old is not None and group.diff_id == layer.diff_id
                and group.packages == old.packages)

    def live(group: Group) -> Layer:
        return Layer(group.id, group.diff_id, group.digest, group.size)

    def candidate(name: str, kept: list[Layer]) -> Arrangement:
        kept_ids = {layer.id for layer in kept if not layer.dead}
        layers = kept + [live(g) for g in _ordered([g for g in layout.groups if g.id not in kept_ids])]
        common = 0
        for old, new in zip(old_stack, layers):
            if old.digest != new.digest:
                break
            common += 1
        return Arrangement(name, layers, sum(layer.size for layer in layers[common:]),
                           sum(layer.size for layer in layers if layer.dead))

    first_change = next((i for i, layer in enumerate(old_stack) if not layer.dead and not alive(layer)),
                        len(old_stack))
    options = [
        candidate("shadow", [layer if layer.dead or alive(layer) else Layer(layer.id, layer.diff_id, layer.digest,
                                                                            layer.size, True)
                             for layer in old_stack]),
        candidate("truncate", old_stack[:first_change]),
        candidate("fresh", []),
    ]
    live_bytes = sum(g.size for g in layout.groups)
    budget = budget_of(layout.max_layers, layout.base_layers)
    best = None
    for option in options:
        if option.dead_bytes and (option.dead_bytes > max_dead_ratio * live_bytes or len(option.layers) > budget):
            continue
        if len(option.layers) > budget:
            continue
        extra = fixup_bytes(option.layers) if option.dead_bytes else 0
        if extra is None:
            continue
        option.cost += extra
        if best is None or (option.cost, option.dead_bytes) < (best.cost, best.dead_bytes):
            best = option
    assert best is not None  # "fresh" is always allowed: assign() kept the groups within the budget
    layout.groups = [current[layer.id] for layer in best.layers if not layer.dead]
    layout.stack = [asdict(layer) for layer in best.layers]
    return best


def pull_cost(previous: Layout | None, layout: Layout) -> int:
    """Compressed bytes a node holding ``previous`` downloads for ``layout`` (chained layer store)."""
    old, new = stack_of(previous), stack_of(layout)
    common = 0
    for a, b in zip(old, new):
        if a.digest != b.digest:
            break
        common += 1
    return sum(layer.size for layer in new[common:]) + int(layout.meta.get("size", 0))
