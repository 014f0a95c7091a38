"""CI: decide what to rebuild and when, and gate new versions behind a smoke test.

The pipeline of one worker tick (:mod:`ci.worker`)::

    repository change events ──> affected environments ──> debounced job (queue)
    recipe commits (GitPython) ─┘
    claim job (SKIP LOCKED, lease) ──> builder.build ──> smoke gate ──> builder.promote ──> webhook

This package never renders or builds an image itself: it calls :mod:`builder`, and launches the
smoke test through :mod:`broker`. The public face, for ``web``::

    Worker(settings, worker_id=None, echo=print)      # .tick(), .run_forever(stop), .run_environment(env, reason)
    enqueue(db, environment, reason, debounce_s=..., max_attempts=...);  list_jobs(db, ...);  get_job(db, id)
    smoke_test(settings, image, checks, environment, log)
    JobState, blueprint, openapi_fragment()
    CiCollector(db)                                   # the queue's Prometheus series, read from the database
    build_timeline(db, since, limit=500)              # builds as bars (start, end, outcome) for the admin page
"""

from ci.errors import CiError, GateFailed, JobNotFound
from ci.gate import GateReport, smoke_test
from ci.http import bp as blueprint
from ci.metrics import CiCollector, build_timeline
from ci.models import JobState
from ci.openapi import fragment as openapi_fragment
from ci.queue import enqueue, get_job, list_jobs
from ci.worker import Worker

__all__ = ["Worker", "enqueue", "list_jobs", "get_job", "smoke_test", "GateReport", "JobState", "blueprint",
           "openapi_fragment", "CiCollector", "build_timeline", "CiError", "GateFailed", "JobNotFound"]
