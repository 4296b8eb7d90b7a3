"""The embedded database: zero setup, safe concurrent start, data that persists; settings."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import PROJECT_ROOT

from workflow_deeplabcut import database, settings


def run_python(code: str, env_extra: dict, cwd=PROJECT_ROOT, timeout=180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "WORKFLOW_DLC_"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def fresh_home(tmp_path):
    """Environment of a user who configured nothing: only a fresh per-user data folder."""
    return {"XDG_DATA_HOME": str(tmp_path / "home"), "MPLBACKEND": "Agg"}


def test_zero_setup_starts_embedded_and_persists(fresh_home, tmp_path):
    write = """
        from workflow_deeplabcut.pipeline import lab, target
        lab.Device.insert1({"device": "cam-persist", "modality": "video"})
        print(target.embedded, target.backend, target.host)
    """
    first = run_python(write, fresh_home, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    embedded, backend, host = first.stdout.split()[-3:]
    assert (embedded, backend) == ("True", "postgresql")
    assert host.startswith(str(tmp_path / "home"))  # the socket lives in the user's data folder
    # The server stopped with its last user; a new process restarts it and finds the row.
    status = run_python(
        "import json; from workflow_deeplabcut import database as d; print(json.dumps(d.embedded_status()))",
        fresh_home,
        cwd=tmp_path,
    )
    assert json.loads(status.stdout.splitlines()[-1])["running"] is False
    read = run_python(
        "from workflow_deeplabcut.pipeline import lab; print(len(lab.Device & {'device': 'cam-persist'}))",
        fresh_home,
        cwd=tmp_path,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.split()[-1] == "1"


def test_concurrent_start_shares_one_server(tmp_path):
    code = """
        import sys, time, psycopg2
        from workflow_deeplabcut import database
        server = database.start_embedded()
        with psycopg2.connect(
            host=str(server.socket_dir), user="postgres", dbname="postgres", password=server.password
        ) as c:
            print(c.cursor().execute("select 1") or server.pid)
        time.sleep(1.5)
    """
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "WORKFLOW_DLC_"))},
        "WORKFLOW_DLC_EMBEDDED_DIR": str(tmp_path / "pg"),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    pids = {o[0].split()[-1] for o in outputs}
    assert len(pids) == 1  # one server, shared


def test_configured_server_starts_nothing_embedded(tmp_path):
    """A datajoint.json with a host selects that server; no embedded cluster is created."""
    (tmp_path / "datajoint.json").write_text(
        json.dumps(
            {
                "database": {
                    "host": "127.0.0.1",
                    "port": 9,
                    "user": "u",
                    "password": "pw",
                    "backend": "mysql",
                },
                "workflow_deeplabcut": {"prefix": "fromfile_"},
            }
        )
    )
    code = """
        from workflow_deeplabcut import database, settings
        print(database.uses_embedded(), settings.get_settings().prefix)
    """
    proc = run_python(code, {"XDG_DATA_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["False", "fromfile_"]
    assert not (tmp_path / "home" / "workflow-deeplabcut" / "pgdata").exists()


def test_settings_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKFLOW_DLC_PREFIX", "env_")
    try:
        settings.configure(prefix="runtime_")
        assert settings.get_settings().prefix == "runtime_"
        assert settings.get_settings().sources["prefix"] == "configure()"
        settings.configure(prefix=None)
        assert settings.get_settings().prefix == "env_"
        with pytest.raises(ValueError, match="Unknown database mode 'sqlite'"):
            settings.configure(database="sqlite")
    finally:
        monkeypatch.undo()
        settings.configure(prefix=None, database=None)  # also re-reads the environment
    assert settings.get_settings().prefix == os.environ["WORKFLOW_DLC_PREFIX"]


def test_relative_paths(raw_root, processed_root, tmp_path):
    video = raw_root / "sub" / "v.mp4"
    video.parent.mkdir(exist_ok=True)
    video.write_bytes(b"x")
    assert settings.to_relative(video) == "sub/v.mp4"
    assert settings.find_full_path("sub/v.mp4") == video
    assert settings.to_relative(processed_root / "a" / "b") == "a/b"
    with pytest.raises(settings.PathOutsideRootsError, match="outside the data roots"):
        settings.to_relative(tmp_path / "elsewhere.mp4")
    with pytest.raises(settings.PathOutsideRootsError, match="climbs out"):
        settings.find_full_path("sub/../../x")
    with pytest.raises(settings.PathOutsideRootsError, match="absolute path"):
        settings.find_full_path(str(video))
    with pytest.raises(FileNotFoundError, match="missing.mp4 was not found under any data root"):
        settings.find_full_path("missing.mp4")


def test_postgres_default_patch_still_needed():
    """DataJoint 2.3.5 reports PostgreSQL defaults with their cast; our patch strips it."""
    from datajoint.adapters.postgres import PostgreSQLAdapter

    row = {
        "column_name": "engine",
        "data_type": "character varying",
        "udt_name": "varchar",
        "is_nullable": "NO",
        "column_default": "'py''torch'::character varying",
        "character_maximum_length": 16,
    }
    patched = PostgreSQLAdapter.parse_column_info(None, row)
    assert patched["default"] == "py'torch"
    assert database._PG_CAST.match("'a'::character varying")
    assert not database._PG_CAST.match("0")


def test_table_order_does_not_depend_on_catalog_order():
    """list_tables() order is a function of the schema: shuffled input, same output."""
    import random

    import networkx as nx
    from datajoint import dependencies

    edges = [
        ("a.`#params`", "a.`task`"),
        ("a.`video_set`", "a.`task`"),
        ("a.`video_set`", "a.`video_set__file`"),
        ("a.`task`", "a.`__training`"),
    ]
    results = set()
    for seed in range(8):
        graph = nx.MultiDiGraph()
        nodes = ["a.`#params`", "a.`video_set`", "a.`video_set__file`", "a.`task`", "a.`__training`"]
        random.Random(seed).shuffle(nodes)
        graph.add_nodes_from(nodes)
        graph.add_edges_from(random.Random(seed).sample(edges, len(edges)))
        results.add(tuple(dependencies.topo_sort(graph)))
    assert len(results) == 1  # the real schema's order is checked by test_seed


def test_connection_id_patch_still_needed(pipeline):
    """After a reconnect DataJoint 2.3.5 keeps the dead connection's id; the patch refreshes it."""
    import datajoint as dj
    from datajoint.connection import Connection

    conn = dj.conn()
    ask = "SELECT pg_backend_pid()" if conn.adapter.backend == "postgresql" else "SELECT CONNECTION_ID()"
    Connection.connect.original(conn)  # DataJoint's own reconnect
    assert conn.connection_id != conn.query(ask).fetchone()[0]  # the bug is still there
    conn.connect()  # patched
    assert conn.connection_id == conn.query(ask).fetchone()[0]


def test_lineage_patch_still_needed(pipeline):
    """DataJoint 2.3.5 reads a lost connection as "no lineage" (and caches it); the patch raises."""
    import datajoint as dj
    from datajoint import heading, lineage

    class Lost:
        adapter = dj.conn().adapter

        def query(self, *args, **kwargs):
            raise dj.errors.LostConnectionError("Connection was lost during a transaction.")

    assert lineage.lineage_table_exists.original(Lost(), "x") is False  # the bug is still there
    assert heading.lineage_table_exists is lineage.lineage_table_exists
    with pytest.raises(dj.errors.LostConnectionError):
        lineage.lineage_table_exists(Lost(), "x")
    assert lineage.lineage_table_exists(dj.conn(), pipeline.model.schema.database) is True
