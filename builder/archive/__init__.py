"""Version archives: a version of an environment as one OCI image layout archive with its records.

    export_version(settings, name, version, target, log) -> dict      # asci env export
    verify_archive(path, log) -> Checked                              # asci env verify
    import_archive(settings, path, log) -> Imported                   # asci env import
    ARCHIVE_REPO                                                      # where imported RPMs live
"""

from builder.archive.export import export_version
from builder.archive.restore import ARCHIVE_REPO, Imported, import_archive
from builder.archive.verify import Checked, verify_archive

__all__ = ["export_version", "verify_archive", "import_archive", "Checked", "Imported", "ARCHIVE_REPO"]
