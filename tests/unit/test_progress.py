"""Progress lines of long transfers (pushes and pulls)."""

from asci.progress import TransferProgress

A, B = "0123456789ab", "ba9876543210"  # layer ids as Docker's streams give them (12 hexadecimal digits)


def test_transfer_progress_sums_layers_and_reports_at_most_every_interval():
    now = [0.0]
    lines: list[str] = []
    progress = TransferProgress("pulling demo", lines.append, every_s=2.0, clock=lambda: now[0])
    progress.update({"status": "Pulling from demo"})  # no layer: ignored, nothing reported yet
    progress.update({"status": "Pulling from demo", "id": "sha256:" + "c" * 64})  # a digest, not a layer
    progress.update({"id": A, "status": "Downloading", "progressDetail": {"current": 1 << 20, "total": 4 << 20}})
    progress.update({"id": B, "status": "Already exists"})
    now[0] = 1.0
    progress.update({"id": A, "status": "Downloading", "progressDetail": {"current": 2 << 20, "total": 4 << 20}})
    assert lines == ["pulling demo: 1.0 MiB of 4.0 MiB (0 of 1 layers done)"]
    now[0] = 2.5
    progress.update({"id": A, "status": "Pull complete"})
    assert lines[-1] == "pulling demo: 4.0 MiB of 4.0 MiB (2 of 2 layers done)"
