"""Faults, on MariaDB and PostgreSQL servers this test starts on private sockets/ports.

The scenarios are those of ``benchmarks/faults.py`` (smaller): restart the server while
workers populate, kill -9 workers at random moments, start 8 workers at once on a fresh prefix,
fill the store's disk. After each, every key is computed exactly once, nothing is partial,
nothing is stuck, and no orphaned file remains after ``gc``.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import IN_CI, PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import faults  # noqa: E402

CLEAN = {"lost": 0, "duplicated": 0, "partial": 0, "stuck": 0, "orphaned": 0}


def _figures(result: dict) -> dict:
    return {k: result[k] for k in CLEAN}


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def server(request, tmp_path_factory):
    if request.param == "mariadb" and not (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()):
        if IN_CI:
            pytest.fail("mariadbd is not installed (scripts/test-services.sh installs it)")
        pytest.skip("mariadbd is not installed")
    folder = tmp_path_factory.mktemp(f"faults-{request.param}")
    srv = faults.make_server(request.param, folder)
    srv.start()
    yield srv
    srv.stop()


def _site(server, tmp_path, **kwargs):
    return faults.Site(server, tmp_path / "site", **kwargs)


def _explain(site, result) -> str:
    failing = [f"exit {code}: {err[-1500:]}" for code, _, err in site.logs if code]
    return f"{result}\n" + "\n".join(failing)


def test_workers_survive_server_restarts(server, tmp_path):
    site = _site(server, tmp_path)
    result = faults.restarts(site, jobs=24, frames=20_000, restarts=2)
    assert result["restarts"] == 2, _explain(site, result)
    assert result["workers_that_reconnected"] >= 1, _explain(site, result)  # the restarts hit them
    assert result["crashed_workers"] == 0, _explain(site, result)
    assert result["done"] == result["jobs"] == 24
    assert _figures(result) == CLEAN, _explain(site, result)


def test_killed_workers_lose_nothing(server, tmp_path):
    site = _site(server, tmp_path)
    result = faults.kills(site, jobs=16, frames=20_000, kills=5)
    assert result["kills"] == 5, _explain(site, result)
    assert result["crashed_workers"] == 0, _explain(site, result)
    assert result["done"] == result["jobs"] == 16
    assert _figures(result) == CLEAN, _explain(site, result)


def test_eight_workers_start_together_on_a_fresh_prefix(server, tmp_path):
    site = _site(server, tmp_path)
    result = faults.simultaneous(site, jobs=8, frames=5_000)
    assert result["crashed_workers"] == 0, _explain(site, result)
    assert result["done"] == result["jobs"] == 8
    assert _figures(result) == CLEAN, _explain(site, result)


def test_workers_wait_for_a_server_that_is_down(server, tmp_path):
    site = _site(server, tmp_path)
    result = faults.late_server(site, jobs=4, frames=5_000)
    assert result["workers_that_waited"] == 2 and result["crashed_workers"] == 0, _explain(site, result)
    assert result["done"] == result["jobs"] == 4
    assert _figures(result) == CLEAN, _explain(site, result)


def test_a_full_disk_is_retried_then_recovered(server, tmp_path):
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs as root; mounting the small disk needs root")
        pytest.skip("mounting a small tmpfs needs root")
    with faults.small_disk(tmp_path, jobs=4, frames=20_000) as mount:
        site = _site(server, tmp_path, store=mount / "store")
        result = faults.full_disk(site, jobs=4, frames=20_000, mount=mount)
    assert result["failed_while_full"] >= 1, _explain(site, result)
    assert result["all_transient"] and result["attempts_while_full"] == [2], _explain(site, result)
    assert result["workers_exit_1_while_full"], _explain(site, result)
    assert result["retry_exit"] == 0 and result["crashed_workers"] == 0, _explain(site, result)
    assert result["done"] == result["jobs"] == 4
    assert _figures(result) == CLEAN, _explain(site, result)


REUSED_ID = """
import datetime as dt, json, platform, subprocess, sys, uuid
import datajoint as dj
from workflow_deeplabcut import database, processing
from workflow_deeplabcut.pipeline import jobs, model

table = model.PoseEstimation
processing.ensure_job_tables({"PoseEstimation": table})
key = (table.key_source - table).keys()[0]
dead = subprocess.Popen([sys.executable, "-c", "pass"]); dead.wait()  # a pid that is gone
conn = dj.conn()
now, started = database.server_times()
# A worker that reserved this job before the server (re)started, then died; its connection id
# is now the id of a live connection (ours), as MariaDB hands out ids again after a restart.
jobs.Worker.insert1({"worker_token": uuid.uuid4().hex, "host": platform.node(), "pid": dead.pid,
    "started": started - dt.timedelta(seconds=30), "heartbeat": started - dt.timedelta(seconds=20),
    "state": "running"})
table.jobs.insert1({**key, "status": "reserved", "priority": 5, "host": platform.node(), "pid": dead.pid,
    "connection_id": conn.connection_id, "reserved_time": started - dt.timedelta(seconds=10)})
live = conn.connection_id in database.live_connections()
recovered = processing.recover_orphans(["PoseEstimation"], heartbeat_timeout=3)
print(json.dumps({"id_is_live": live, "recovered": recovered,
                  "pending": len(table.jobs.pending & key), "reserved": len(table.jobs.reserved & key)}))
"""


def test_a_reused_connection_id_does_not_hide_a_dead_worker(server, tmp_path):
    """After a restart a dead worker's connection id may belong to someone else: its heartbeat decides."""
    import json
    import time

    site = _site(server, tmp_path)
    site.seed(1, 100)
    time.sleep(3.5)  # the server has been up longer than the heartbeat timeout: no grace period
    seen = json.loads(site.python(REUSED_ID).splitlines()[-1])
    assert seen["id_is_live"]  # by connection id alone the reservation looked alive
    assert seen == {"id_is_live": True, "recovered": 1, "pending": 1, "reserved": 0}
