"""A Dask worker preload for the lost-worker tests: logs every slide a worker starts, kills "poison" ones.

Loaded only by those tests (``distributed.worker.preload``). It wraps
:func:`pathxai.heatmap.slide_run.run_job` in the worker process (the task refers to it by name):

- ``$PATHXAI_TEST_DASK_LOG``: a file to which ``<slide_id> <worker pid>`` is appended as a slide starts;
- ``$PATHXAI_TEST_DASK_POISON``: comma-separated slide ids whose worker SIGKILLs itself on starting them
  (a slide that makes the worker die every time).

Never import it in the test process: the task would then no longer pickle by reference.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pathxai.heatmap.slide_run as heatmap_run

# the worker may import this file more than once: wrap the original only
_run_job = getattr(heatmap_run, "_unwrapped_run_job", heatmap_run.run_job)
heatmap_run._unwrapped_run_job = _run_job  # type: ignore[attr-defined]


def run_job(job: Any, out_dir: Any, settings: Any, **kwargs: Any) -> Any:
    """Log the start, die on a poison slide, else run the slide as usual."""
    log = os.environ.get("PATHXAI_TEST_DASK_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{job.slide_id} {os.getpid()}\n")
    if job.slide_id in os.environ.get("PATHXAI_TEST_DASK_POISON", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    return _run_job(job, out_dir, settings, **kwargs)


heatmap_run.run_job = run_job  # type: ignore[assignment]
