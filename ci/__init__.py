"""CI: decide what to rebuild and when, and gate new versions behind a smoke test.

The pipeline of one worker tick (:mod:`ci.worker`)::

    repository change events ──> affected environments ──> debounced job (queue)
    recipe commits (GitPython) ─┘
    claim job (SKIP LOCKED, lease) ──> builder.build ──> smoke gate ──> builder.promote ──> webhook

This package never renders or builds an image itself: it calls :mod:`builder`.
"""
