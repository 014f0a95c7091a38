"""Per-package image layers with stable digests (rpm-ostree's chunked images, Nix's layered images).

An environment is first built exactly as before (one ``RUN`` that downloads the locked RPMs, checks
their sha256 and installs them with dnf, so scriptlets run) and verified; then it is *re-layered*:

1. :mod:`.snapshot` lists the built image and its base (GNU ``find`` in two containers) and fetches,
   with GNU ``tar`` in a third, exactly the paths the build added or changed: a :class:`.tree.Tree`
   (whiteouts for the paths it deleted). No ``docker save`` of the whole base is needed.
2. :mod:`.owners` asks the image's rpm which package owns which path.
3. :mod:`.layout` maps packages to layer groups, keeping the previous version's layout (within a
   layer budget) and the prefix of its layer stack that nodes already hold.
4. :mod:`.split` assigns every entry to a group, to the small ``meta`` layer (rpmdb, files changed by
   scriptlets, lock, launchers, whiteouts) or to nothing.
5. :mod:`.tarball` writes each group as a deterministic tar + gzip: an unchanged package gives the
   same bytes, the same diff_id and the same blob digest.
6. :mod:`.image` makes the image config and manifest; :mod:`.push` uploads what the registry lacks
   (base layers are mounted from the base repository) and the manifest, reporting bytes done.

:func:`.relayer.relayer_image` runs the steps in order.
"""

from builder.layers.layout import Group, Layout
from builder.layers.relayer import Relayered, relayer_image

__all__ = ["Group", "Layout", "Relayered", "relayer_image"]
