"""Starts bqemulator for fintrail's tests: `python launch.py start --rest-port 0 ...`.

Three adjustments, each to bqemulator's own process, none to what it answers:

1. Offline start. bqemulator refuses to start unless DuckDB's `spatial` extension loads, and
   DuckDB downloads extensions from its own server at run time, which this machine (and CI)
   cannot reach. fintrail writes no GEOGRAPHY, so the extension is skipped.
2. Transactions isolated like BigQuery's. bqemulator runs a script's statements one by one and
   lets other jobs interleave between them (its BEGIN/COMMIT is a per-table snapshot for
   rollback, not isolation). BigQuery runs a multi-statement transaction in isolation (snapshot
   isolation; a concurrent transaction on the same tables aborts). The sink's exactly-once
   commit relies on that, and the crash tests start a new writer while the killed one's job may
   still run on the server, so query jobs run one at a time here.
3. No time-travel copies. bqemulator copies the whole table after every write (insertAll, DML)
   to serve `FOR SYSTEM_TIME AS OF`, and keeps the copies for 7 days: each write then costs
   the table's size, and memory grows with every commit. fintrail never reads the past, so
   writes only announce the change (what the copy was for besides).
4. No orphan. The emulator exits when the process that started it is gone (a test killed by
   SIGKILL never runs its cleanup).

Also: the query cache is off, and DuckDB's avro extension is not tried (offline).
"""

import asyncio
import os
import sys
import threading
import time

os.environ.setdefault("BQEMU_ENABLE_FORMAT_EXTENSIONS", "false")
os.environ.setdefault("BQEMU_QUERY_CACHE_TTL_SECONDS", "0")

from bqemulator.storage import engine  # noqa: E402

engine.DuckDBEngine._load_spatial = lambda self: None

from bqemulator.domain.events import TableDataChanged  # noqa: E402
from bqemulator.versioning.snapshots import SnapshotManager  # noqa: E402


def _announce_change_only(self, project_id, dataset_id, table_id):
    self._events.publish(TableDataChanged(project_id, dataset_id, table_id))


SnapshotManager.record_change = _announce_change_only

import bqemulator.api.routes.jobs as jobs_routes  # noqa: E402

_run_query_job = jobs_routes.execute_query_job
_one_job_at_a_time = None


async def _serialized_query_job(*args, **kwargs):
    global _one_job_at_a_time
    if _one_job_at_a_time is None:
        _one_job_at_a_time = asyncio.Lock()
    async with _one_job_at_a_time:
        return await _run_query_job(*args, **kwargs)


jobs_routes.execute_query_job = _serialized_query_job


def _exit_with_parent():
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


threading.Thread(target=_exit_with_parent, daemon=True).start()

from bqemulator.cli import main  # noqa: E402

sys.exit(main())
