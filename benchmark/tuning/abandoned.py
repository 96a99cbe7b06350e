"""Work left behind by a process that died (SIGKILL, OOM, a lost machine): tell it apart from work still going on.

Optuna's side (a trial left RUNNING) is recovered by ``Tuner``; this module closes the matching rows of the results
database, which would otherwise say "running" forever.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Collection

from benchmark.results import ResultsStore

logger = logging.getLogger(__name__)


def process_is_gone(hostname: str | None, pid) -> bool:
    """True when ``pid`` ran on this host and no longer exists; a process of another host cannot be checked."""
    if hostname != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    return False


def close_abandoned_runs(results: ResultsStore, study_name: str, failed_trials: Collection[int] = ()) -> None:
    """Mark as failed the runs of ``study_name`` still "running" whose process is gone from this host, or that
    belong to a trial Optuna has already closed as FAIL (its worker's heartbeat went stale, on any host)."""
    abandoned = [run for run in results.running_runs(study_name)
                 if (run["kind"] == "trial" and run["trial_number"] in failed_trials)
                 or process_is_gone(run["hostname"], run["pid"])]
    if abandoned:
        logger.info("%s: %d run(s) whose process died marked failed in the results database", study_name,
                    len(abandoned))
        results.mark_abandoned(run["run_id"] for run in abandoned)
