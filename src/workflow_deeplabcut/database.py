"""Database adapter: the embedded PostgreSQL, or a configured DataJoint server.

With nothing configured, :func:`configure_datajoint` starts (or reuses) the private embedded
PostgreSQL of :mod:`.embedded` (Unix socket only, password-protected, ``0700`` folders), whose
data lives in ``settings.embedded_dir`` and persists between runs. Processes that start at once
share one server; it stops when the last process that uses it exits.

A configured server (``DJ_HOST``, or a ``database.host`` in ``datajoint.json``, or
``WORKFLOW_DLC_DATABASE=server``) is used as DataJoint is configured; nothing embedded starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import datajoint as dj

from . import embedded
from .errors import DatabaseError
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: Name of the DataJoint store that holds pose arrays (``<npy@workflow_dlc>``).
STORE = "workflow_dlc"


_PG_CAST = re.compile(r"^'(?P<value>(?:[^']|'')*)'::[\w .\"\[\]]+$")


def _patch_postgres_defaults() -> None:
    """Report PostgreSQL column defaults as declared (work around DataJoint 2.3.5).

    PostgreSQL reports a string default as ``'pytorch'::character varying``; DataJoint 2.3.5
    shows that text verbatim in ``heading`` and ``describe()`` (and re-declares it in
    ``alter``). This strips the cast so ``engine="pytorch"`` reads back as declared.
    ``tests/test_database.py`` checks the patch is still needed and still works.
    """
    from datajoint.adapters.postgres import PostgreSQLAdapter

    original = PostgreSQLAdapter.parse_column_info
    if getattr(original, "_workflow_dlc_patched", False):
        return

    def parse_column_info(self, row):
        info = original(self, row)
        match = _PG_CAST.match(info.get("default") or "")
        if match:
            info["default"] = match["value"].replace("''", "'")
        return info

    parse_column_info._workflow_dlc_patched = True
    PostgreSQLAdapter.parse_column_info = parse_column_info


def _patch_deterministic_topo_sort() -> None:
    """Make DataJoint's topological table order deterministic (work around DataJoint 2.3.5).

    DataJoint sorts tables with ``networkx.topological_sort``, whose order between independent
    tables follows the order the database happened to list them in, so
    ``schema.list_tables()`` varied between runs. Feeding it the graph with nodes and edges in
    sorted order makes the order a function of the schema alone (ties broken by table name).
    """
    import networkx as nx
    from datajoint import dependencies

    original = dependencies.topo_sort
    if getattr(original, "_workflow_dlc_patched", False):
        return

    def topo_sort(graph):
        ordered = nx.MultiDiGraph()
        ordered.add_nodes_from(sorted(graph.nodes(data=True), key=lambda node: node[0]))
        ordered.add_edges_from(
            sorted(graph.edges(keys=True, data=True), key=lambda e: (e[0], e[1], str(e[2])))
        )
        return original(ordered)

    topo_sort._workflow_dlc_patched = True
    dependencies.topo_sort = topo_sort


def _patch_job_table_types() -> None:
    """Let job tables declare on PostgreSQL for tables keyed by a datetime (DataJoint 2.3.5).

    A job table copies its target's key attributes by their heading type; on PostgreSQL a
    ``datetime`` key (e.g. ``session_datetime``) reads back as ``timestamp without time
    zone``, which DataJoint's parser rejects, so ``populate(reserve_jobs=True)`` failed for
    every table below ``session.Session``; integer keys read back as native ``integer`` or
    ``smallint`` and warn. Each type is given back as the core type it was declared as.
    """
    from datajoint.jobs import Job

    original = Job._get_fk_derived_pk_attrs
    if getattr(original, "_workflow_dlc_patched", False):
        return

    def _get_fk_derived_pk_attrs(self):
        renamed = {
            "timestamp without time zone": "datetime",
            "integer": "int32",
            "smallint": "int16",
            "bigint": "int64",
            "double precision": "float64",
            "real": "float32",
            "boolean": "bool",
        }
        return [(name, renamed.get(dtype, dtype)) for name, dtype in original(self)]

    _get_fk_derived_pk_attrs._workflow_dlc_patched = True
    Job._get_fk_derived_pk_attrs = _get_fk_derived_pk_attrs


def _patch_connection_id_on_reconnect() -> None:
    """Refresh ``Connection.connection_id`` when DataJoint reconnects (DataJoint 2.3.5).

    DataJoint reads the server's id of its connection once, when the connection object is made;
    after a reconnect (automatic in ``query`` or explicit ``connect``) job reservations went on
    recording the id of the dead connection, so a live worker's job looked orphaned.
    """
    from datajoint.connection import Connection

    original = Connection.connect
    if getattr(original, "_workflow_dlc_patched", False):
        return

    def connect(self):
        original(self)
        if hasattr(self, "connection_id"):
            self.connection_id = self.adapter.get_connection_id(self._conn)

    connect._workflow_dlc_patched = True
    connect.original = original
    Connection.connect = connect


def _patch_lineage_on_lost_connection() -> None:
    """Let a lost connection fail a lineage lookup instead of meaning "no lineage" (DataJoint 2.3.5).

    ``lineage_table_exists`` answers False on *any* exception, so a heading loaded while the
    server restarts is cached without lineage, and every later join with it fails ("lineage
    missing on one side"). A lost connection is now raised (and waited out by the workers).
    """
    from datajoint import heading, lineage

    original = lineage.lineage_table_exists
    if getattr(original, "_workflow_dlc_patched", False):
        return

    def lineage_table_exists(connection, database):
        try:
            return (
                connection.query(connection.adapter.get_table_info_sql(database, "~lineage")).fetchone()
                is not None
            )
        except Exception as err:
            if is_connection_error(err):
                raise
            return False  # as DataJoint: catalog queries may fail on some backends

    lineage_table_exists._workflow_dlc_patched = True
    lineage_table_exists.original = original
    lineage.lineage_table_exists = lineage_table_exists
    heading.lineage_table_exists = lineage_table_exists


_patch_postgres_defaults()
_patch_deterministic_topo_sort()
_patch_job_table_types()
_patch_connection_id_on_reconnect()


class DatabaseUnreachableError(DatabaseError):
    """The database server cannot be reached; the message names the host and backend."""


@dataclass(frozen=True)
class Target:
    """Where the pipeline's database is (never holds a password)."""

    backend: str
    host: str
    port: int
    user: str | None
    embedded: bool

    def __str__(self) -> str:
        kind = "embedded PostgreSQL" if self.embedded else self.backend
        where = f"socket dir {self.host}" if self.host.startswith("/") else f"{self.host}:{self.port}"
        return f"{kind} at {where} (user {self.user})"


def server_configured() -> bool:
    """Return True when DataJoint settings name a database host.

    A host counts as configured when ``DJ_HOST`` is set, or when the ``datajoint.json`` that
    DataJoint loaded sets ``database.host``.
    """
    if os.environ.get("DJ_HOST"):
        return True
    path = getattr(dj.config, "_config_path", None)
    if not path:
        return False
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return "database.host" in data or "host" in (data.get("database") or {})


def uses_embedded(settings: Settings | None = None) -> bool:
    """Return True when the pipeline runs on the embedded PostgreSQL."""
    settings = settings or get_settings()
    if settings.database == "auto":
        return not server_configured()
    return settings.database == "embedded"


def start_embedded(data_dir: Path | None = None, *, keep_running: bool | None = None) -> embedded.Server:
    """Start the embedded PostgreSQL, or attach to it if it already runs (see :mod:`.embedded`).

    By default the server stops when the last process that uses it exits; after
    ``keep_running=True`` (``workflow-deeplabcut db start``) it stays up until
    :func:`stop_embedded`.

    Parameters
    ----------
    data_dir : Path, optional
        The cluster's data folder; defaults to ``settings.embedded_dir``. Created on first use.
    keep_running : bool, optional
        Leave the server running after this process exits, from now on.

    Returns
    -------
    embedded.Server
        Its socket folder and password.
    """
    data_dir = Path(data_dir or get_settings().embedded_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return embedded.start(data_dir, keep_running=keep_running)


def embedded_status(data_dir: Path | None = None) -> dict:
    """Describe the embedded server without starting it (see :func:`.embedded.status`)."""
    return embedded.status(Path(data_dir or get_settings().embedded_dir))


def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the embedded server if it runs (and forget ``keep_running``); return whether it ran."""
    return embedded.stop(Path(data_dir or get_settings().embedded_dir))


def log_to_stderr() -> None:
    """Send DataJoint's log lines to standard error, so standard output carries only results."""
    for handler in logging.getLogger("datajoint").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def configure_datajoint(settings: Settings | None = None) -> Target:
    """Point DataJoint at the pipeline's database and register the pose-array store.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :func:`~workflow_deeplabcut.settings.get_settings`.

    Returns
    -------
    Target
        Where the database is.
    """
    settings = settings or get_settings()
    log_to_stderr()
    local = uses_embedded(settings)
    if local:
        server = start_embedded(settings.embedded_dir)
        dj.config["database.backend"] = "postgresql"
        dj.config["database.host"] = str(server.socket_dir)
        dj.config["database.port"] = embedded.PORT
        dj.config["database.user"] = embedded.USER
        dj.config["database.password"] = server.password
    if str(dj.config["database.host"] or "").startswith("/") and dj.config["database.use_tls"] is None:
        dj.config["database.use_tls"] = False  # a Unix socket: no TLS to try (and warn about) first
    if STORE not in dj.config.stores:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        dj.config.stores[STORE] = {"protocol": "file", "location": str(settings.store_dir)}
    return current_target(local)


def current_target(embedded: bool | None = None) -> Target:
    """Return where DataJoint is configured to connect (no password)."""
    if embedded is None:
        embedded = uses_embedded()
    return Target(
        backend=dj.config["database.backend"],
        host=dj.config["database.host"],
        port=int(dj.config["database.port"]),
        user=dj.config["database.user"],
        embedded=embedded,
    )


def connect() -> dj.Connection:
    """Connect (or reuse DataJoint's connection), turning failures into a clear error.

    Raises
    ------
    DatabaseUnreachableError
        Naming the backend, host/socket and user, and how to change them. The password is
        never part of the message.
    """
    try:
        return dj.conn()
    except Exception as err:  # drivers raise many types; all mean "unreachable"
        target = current_target()
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        password = dj.config.get("database.password")
        if password:
            detail = detail.replace(str(password), "***")
        raise DatabaseUnreachableError(
            f"Cannot connect to the {target}: {detail}. Check DJ_HOST/DJ_PORT/DJ_BACKEND/"
            "DJ_USER/DJ_PASS or datajoint.json, or unset DJ_HOST to use the embedded database."
        ) from None


def declaration_lock(name: str = "declare", timeout: float = 300.0):
    """Hold a server-wide lock for this prefix while schemas and tables are declared.

    Workers that start together on a fresh prefix would otherwise race to create the same
    schema or table (PostgreSQL: ``duplicate key ... pg_type_typname_nsp_index``; MySQL:
    ``database exists``). Uses ``pg_advisory_lock`` or ``GET_LOCK``; released on exit.
    """
    return _server_lock(f"{get_settings().prefix}:{name}", timeout)


@contextlib.contextmanager
def _server_lock(name: str, timeout: float):
    conn = connect()
    digest = hashlib.sha256(f"workflow_dlc:{name}".encode()).digest()
    if conn.adapter.backend == "postgresql":
        lock_id = int.from_bytes(digest[:8], "big", signed=True)
        deadline = time.monotonic() + timeout
        while not conn.query("SELECT pg_try_advisory_lock(%s)", (lock_id,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise DatabaseError(f"Timed out after {timeout:.0f} s waiting for the lock {name!r}.")
            time.sleep(0.05)
        try:
            yield
        finally:
            conn.query("SELECT pg_advisory_unlock(%s)", (lock_id,))
    else:
        lock_name = "wdlc_" + digest.hex()[:40]
        if conn.query("SELECT GET_LOCK(%s, %s)", (lock_name, int(timeout))).fetchone()[0] != 1:
            raise DatabaseError(f"Timed out after {timeout:.0f} s waiting for the lock {name!r}.")
        try:
            yield
        finally:
            conn.query("SELECT RELEASE_LOCK(%s)", (lock_name,))


def create_schema(name: str, like: str | None = None) -> None:
    """Create a schema unless it exists; on MySQL/MariaDB as UTF-8 (utf8mb4, binary collation).

    A server whose default character set is latin1 would otherwise refuse non-Latin-1 text, and
    a case-insensitive collation would make ``M1`` and ``m1`` the same key there but not on
    PostgreSQL; ``utf8mb4_bin`` compares as PostgreSQL does.

    When the schema ``like`` exists already, the new schema takes its character set and
    collation instead: a foreign key between columns of different collations cannot be
    made, so a schema added by a new version must match a database an earlier version made.
    """
    conn = connect()
    if conn.adapter.backend == "mysql":
        charset, collation = "utf8mb4", "utf8mb4_bin"
        if like is not None:
            found = conn.query(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME = %s",
                args=(like,),
            ).fetchone()
            if found:
                charset, collation = found
        conn.query(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET {charset} COLLATE {collation}")


def server_times() -> tuple[dt.datetime, dt.datetime]:
    """Return the server's (now, start time), as naive datetimes in the session's time zone."""
    conn = connect()
    if conn.adapter.backend == "postgresql":
        query = "SELECT LOCALTIMESTAMP(3), pg_postmaster_start_time()::timestamp(3)"
    else:
        query = (
            "SELECT NOW(3), NOW(3) - INTERVAL (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
            "WHERE VARIABLE_NAME = 'UPTIME') SECOND"
        )
    now, started = conn.query(query).fetchone()
    return now, started


def live_connections() -> set[int]:
    """Return the ids of the connections the database server has open now."""
    conn = connect()
    if conn.adapter.backend == "postgresql":
        query = "SELECT pid FROM pg_stat_activity"
    else:
        query = "SELECT ID FROM information_schema.PROCESSLIST"
    return {int(row[0]) for row in conn.query(query).fetchall()}


_CONNECTION_MESSAGES = (
    "lost connection",
    "server has gone away",
    "server closed the connection",
    "connection refused",
    "can't connect",
    "could not connect",
    "terminating connection",
    "connection already closed",
    "connection was lost",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "connection to server",  # libpq: 'connection to server on socket "..." failed: ...'
    "is the server running",
    "broken pipe",
    "connection reset",
    "(0, '')",  # pymysql: the server closed the socket
)


def is_connection_error(err: BaseException) -> bool:
    """Return True when an exception means the database connection was lost or refused.

    Only errors of the database drivers or of DataJoint count, and only with a message that
    says so: a deadlock or a missing file is not a connection problem.
    """
    if isinstance(err, DatabaseUnreachableError | dj.errors.LostConnectionError):
        return True
    module = type(err).__module__ or ""
    from_driver = module.startswith(("pymysql", "psycopg2", "datajoint"))
    text = str(err).lower()
    return from_driver and any(m in text for m in _CONNECTION_MESSAGES)


def reconnect() -> dj.Connection:
    """Re-open DataJoint's shared connection (after a server restart); raise if it cannot."""
    conn = dj.conn()
    conn._in_transaction = False
    conn.connect()
    return conn


_patch_lineage_on_lost_connection()  # after is_connection_error, which it uses
log_to_stderr()  # results on stdout, log lines on stderr: `--json` output parses as JSON
