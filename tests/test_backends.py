"""The suite again on the two database servers (PostgreSQL 127.0.0.1:5432, MariaDB 127.0.0.1:3306).

Each server run is a separate pytest process (one backend per process), with its own schema
prefix, and includes the real DeepLabCut tests on the synthetic video. The embedded-only
tests and the slow real-data example run only in the embedded run.
"""

import os
import socket
import subprocess
import sys

import pytest
from conftest import IN_CI, PROJECT_ROOT, SERVERS


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("backend", sorted(SERVERS))
def test_suite_on_server(backend):
    server = SERVERS[backend]
    if not _reachable(server["DJ_HOST"], int(server["DJ_PORT"])):
        message = f"{backend} server not reachable at {server['DJ_HOST']}:{server['DJ_PORT']}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "WORKFLOW_DLC_TEST_BACKEND": backend}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "tests"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"suite failed on {backend}:\n{tail}"
    assert " passed" in tail and "skipped" not in tail, tail
