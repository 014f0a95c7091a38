"""The demo's environment build shows its steps: builder lines, one line per Docker step, a summary of
a long step's output every so often, and nothing of dnf's chatter otherwise."""

from web.build_progress import BuildProgress


def test_a_build_shows_its_steps_and_summarises_long_ones():
    now = [0.0]
    shown: list[str] = []
    sink = BuildProgress(shown.append, every_s=15, clock=lambda: now[0])
    lines = [(0, "[job 1 demo] building demo (attempt 1/3): asci demo"), (1, "[job 1 demo] Step 1/3 : FROM base"),
             (2, "[job 1 demo] Step 2/3 : RUN dnf install -y asci-demo-viewer"), (3, "[job 1 demo] Installing: a"),
             (10, "[job 1 demo] Installing: b"), (20, "[job 1 demo] Installing: c"), (21, "[job 1 demo] Installing: d"),
             (40, "[job 1 demo] Step 3/3 : LABEL x=y"), (41, "[job 1 demo] Successfully built 0123"),
             (42, "[job 1 demo] Successfully tagged demo:x"), (60, "[job 1 demo] smoke test passed"), (61, "")]
    for at, line in lines:
        now[0] = at
        sink(line)
    assert shown == ["  [   0 s] building demo (attempt 1/3): asci demo",
                     "  [   1 s] image step 1/3: FROM base",
                     "  [   2 s] image step 2/3: RUN dnf install -y asci-demo-viewer",
                     "  [  20 s] image step 2/3 still running: Installing: c",
                     "  [  40 s] image step 3/3: LABEL x=y",
                     "  [  41 s] image built",
                     "  [  60 s] smoke test passed"]
