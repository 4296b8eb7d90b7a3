"""The web dashboard (``workflow-deeplabcut serve``): data, HTTP rules, and a real browser.

The browser tests drive Debian's Chromium (``/usr/bin/chromium``, installed by
``scripts/test-services.sh``) with Playwright against a ``serve`` process on this run's
database, and save a screenshot of each page under ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
from conftest import BACKEND, IN_CI, PROJECT_ROOT, free_port
from PIL import Image

from workflow_deeplabcut.dashboard import data

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("WORKFLOW_DLC_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts")) / "dashboard"


# ------------------------------------------------------------------------------ the data shown
@pytest.fixture(scope="module")
def dash(pipeline, new_session, camera, raw_root):
    """A session with an imported, defective estimate, its QC, pictures, labeled video and kinematics;
    two evaluated iterations of one project; and one failed job for the overview's error list."""
    from workflow_deeplabcut import synthetic
    from workflow_deeplabcut.demo import DEMO_POSTPROCESS

    model, qc, postprocess = pipeline.model, pipeline.qc, pipeline.postprocess
    spec = synthetic.SyntheticSpec()
    folder = raw_root / "dashboard"
    video = synthetic.make_video(folder, spec)
    frame, _ = synthetic.noisy_estimate(spec)
    h5 = synthetic.write_dlc_h5(frame, folder / "synthetic_DLC_external.h5")
    session_key = new_session("dash")
    recording = model.VideoRecording.insert_recording(session_key, 1, camera, [video])
    model.RecordingInfo.populate(recording)
    model.Model.insert_external_model("dash-noisy", list(synthetic.BODY_PARTS), "DeepLabCut")
    key = model.PoseEstimationTask.generate_import(recording, "dash-noisy", h5, "DeepLabCut")
    pp = postprocess.PostprocessParamSet.insert_new_params("dashboard test", DEMO_POSTPROCESS)
    postprocess.PostprocessTask.generate(key, pp)
    qc.LabeledVideoTask.insert1({**key, "labeled_video_idx": 0})
    for table in (
        model.PoseEstimation,
        qc.PoseQC,
        qc.QCPlots,
        qc.LabeledVideo,
        postprocess.CleanedTrajectory,
        postprocess.Kinematics,
    ):
        result = table.populate(key, suppress_errors=True)
        assert not result["error_list"], result["error_list"]

    # Two iterations of one project, evaluated (rows as ModelEvaluation writes them).
    model.BodyPart.insert([{"body_part": p} for p in synthetic.BODY_PARTS], skip_duplicates=True)
    for iteration, (train_error, test_error) in enumerate([(6.5, 9.25), (2.5, 3.75)]):
        name = f"dash-iter{iteration}"
        model.Model.insert1(
            {
                "model_name": name,
                "task": "dashproj",
                "date": "Jan1",
                "iteration": iteration,
                "snapshotindex": 0,
                "shuffle": 1,
                "trainingsetindex": 0,
                "scorer": f"DLC_dash{iteration}",
                "config_template": {
                    "skeleton": [["head", "tail"], ["bodypart1", "bodypart2"]],
                    "pcutoff": 0.4,
                },
                "project_path": "dashproj-project",
            }
        )
        model.Model.BodyPart.insert([{"model_name": name, "body_part": p} for p in synthetic.BODY_PARTS])
        model.ModelEvaluation.insert1(
            {
                "model_name": name,
                "train_iterations": 10 * (iteration + 1),
                "train_error": train_error,
                "test_error": test_error,
                "p_cutoff": 0.4,
                "train_error_p": train_error,
                "test_error_p": test_error,
            },
            allow_direct_insert=True,
        )

    # A load-mode task whose outputs do not exist: one failed job in the jobs table.
    failing_rec = model.VideoRecording.insert_recording(session_key, 2, camera, [video])
    model.RecordingInfo.populate(failing_rec)
    failing = {**failing_rec, "model_name": "dash-iter0"}
    model.PoseEstimationTask.insert1(
        {**failing, "task_mode": "load", "pose_estimation_output_dir": "nowhere/dashboard"}
    )
    result = model.PoseEstimation.populate(failing, reserve_jobs=True, suppress_errors=True)
    assert result["error_list"]
    yield {"key": key, "session": session_key, "spec": spec, "frame": frame, "failing": failing}
    (model.PoseEstimation.jobs & failing).delete_quick()
    (model.PoseEstimationTask & failing).delete(prompt=False)


def test_minmax_downsample_keeps_extremes_and_gaps():
    rng = np.random.default_rng(0)
    values = rng.normal(size=108_000).cumsum()
    values[50_000:50_400] = np.nan  # a gap wider than one bucket
    picks = data.minmax_downsample(values, 1000)
    assert len(picks) <= 2000
    assert np.all(np.diff(picks) > 0)
    assert np.nanargmax(values) in picks and np.nanargmin(values) in picks
    assert np.isnan(values[picks]).any()  # the gap stays a gap on the plot
    # Every bucket's extremes are kept: the reduced series spans each bucket's range.
    size = int(np.ceil(len(values) / 1000))
    for b in range(0, 1000, 97):
        chunk = values[b * size : (b + 1) * size]
        kept = values[picks[(picks >= b * size) & (picks < (b + 1) * size)]]
        if np.isfinite(chunk).any():
            assert np.nanmax(kept) == np.nanmax(chunk) and np.nanmin(kept) == np.nanmin(chunk)
    short = np.arange(30.0)
    assert np.array_equal(data.minmax_downsample(short, 20), np.arange(30))


def test_trajectory_api_values_are_the_stored_ones(pipeline, dash):
    stored = pipeline.model.PoseEstimation.get_trajectory(dash["key"])
    whole = data.trajectory(dash["key"], buckets=1000)
    assert whole["nframes"] == dash["spec"].n_frames == len(stored)
    assert whole["window"] == [0, dash["spec"].n_frames - 1]
    scorer = stored.columns.get_level_values("scorer")[0]
    for series in whole["series"]:
        part = series["body_part"]
        for field, column in (("x", "x"), ("y", "y"), ("likelihood", "likelihood")):
            frames = np.round(np.asarray(series[field]["t"]) * dash["spec"].fps).astype(int)
            expected = stored[(scorer, part, column)].to_numpy()[frames]
            got = np.array([np.nan if v is None else v for v in series[field]["v"]])
            np.testing.assert_allclose(got, expected, atol=1e-2 if field != "likelihood" else 1e-4)
    # A window, reduced to 10 buckets: at most 20 points per series, all inside the window.
    part = data.trajectory(dash["key"], start=2.0, stop=4.0, buckets=10)
    assert part["window"] == [60, 120]
    for series in part["series"]:
        assert 0 < len(series["x"]["t"]) <= 20
        assert min(series["x"]["t"]) >= 2.0 and max(series["x"]["t"]) <= 4.0


def test_sessions_list_filters_sorts_and_pages(pipeline, dash, monkeypatch):
    qc = pipeline.qc
    worst = max((qc.PoseQC & dash["key"]).to_arrays("fraction_below_pcutoff"))
    result = data.sessions(data.SessionFilter(subject=dash["session"]["subject"]))
    assert result["total"] == 1
    (row,) = result["rows"]
    assert (row["n_recordings"], row["n_estimations"], row["models"]) == (2, 1, "dash-noisy")
    assert row["worst_below_pcutoff"] == pytest.approx(worst)
    assert row["flagged"] == (worst > data.FLAG_BELOW_PCUTOFF)
    flagged = data.sessions(data.SessionFilter(flagged=True))["rows"]
    assert all(r["flagged"] for r in flagged)
    assert (dash["session"]["subject"] in {r["subject"] for r in flagged}) == row["flagged"]
    by_model = data.sessions(data.SessionFilter(model="dash-noisy"))
    assert [r["subject"] for r in by_model["rows"]] == [dash["session"]["subject"]]
    day = dash["session"]["session_datetime"].date()
    assert (
        data.sessions(data.SessionFilter(date_from=day + dt.timedelta(days=1), subject="dash"))["total"] == 0
    )

    monkeypatch.setattr(data, "PAGE_SIZE", 2)
    everything = len(pipeline.session.Session())
    pages = data.sessions(data.SessionFilter(sort="subject", descending=False))
    assert pages["pages"] == -(-everything // 2) and len(pages["rows"]) == min(2, everything)
    seen = []
    for page in range(1, pages["pages"] + 1):
        seen += [
            r["subject"]
            for r in data.sessions(data.SessionFilter(sort="subject", descending=False, page=page))["rows"]
        ]
    assert seen == sorted(seen) and len(seen) == everything


# ------------------------------------------------------------------------------ HTTP rules
@pytest.fixture(scope="module")
def client(pipeline, dash):
    from starlette.testclient import TestClient

    from workflow_deeplabcut.dashboard.app import LOOPBACK_HOSTS, create_app

    with TestClient(create_app(allowed_hosts=LOOPBACK_HOSTS), base_url="http://127.0.0.1:8050") as c:
        yield c


def test_pages_answer_and_show_the_rows(pipeline, dash, client):
    from workflow_deeplabcut import processing

    page = client.get("/")
    assert page.status_code == 200
    done = {row["table"]: row["done"] for row in processing.status()}
    found = dict(re.findall(r'data-table="([^"]+)"><td>[^<]+</td><td class="n done">(\d+)<', page.text))
    assert {k: int(v) for k, v in found.items()} == done
    assert "nowhere/dashboard" in page.text or "dash-iter0" in page.text  # the failed job's key or message
    assert client.get("/api/overview").json()["tables"]
    query = urlencode(data.url_params(dash["session"]))
    session = client.get(f"/session?{query}")
    assert session.status_code == 200
    assert "dash-noisy" in session.text and "qc0_trajectory.png" in session.text
    assert "_labeled0.mp4" in session.text
    models = client.get("/models")
    assert all(name in models.text for name in ("dash-iter0", "dash-iter1", "9.25", "3.75", "head–tail"))
    assert (
        "bodypart1" not in models.text
        and "1 edge(s) of config.yaml name parts this model lacks" in models.text
    )
    assert client.get("/session?subject=nobody&session_datetime=2020-01-01T00:00:00").status_code == 404
    assert client.get("/static/plotly.min.js").headers["content-type"].startswith("text/javascript")
    csv = client.get(f"/download/trajectory.csv?{urlencode(data.url_params(dash['key']))}")
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    read = pd.read_csv(io.StringIO(csv.text), header=[0, 1, 2], index_col=0)
    stored = pipeline.model.PoseEstimation.get_trajectory(dash["key"])
    np.testing.assert_allclose(read.to_numpy(), stored.to_numpy())


def test_session_nwb_download_reads_back(pipeline, dash, client, tmp_path):
    from pynwb import NWBHDF5IO

    response = client.get(f"/download/session.nwb?{urlencode(data.url_params(dash['session']))}")
    assert response.status_code == 200
    path = tmp_path / "session.nwb"
    path.write_bytes(response.content)
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.subject.subject_id == dash["session"]["subject"]
        assert "behavior" in nwb.processing


def test_only_reads(client, dash):
    for method in ("post", "put", "delete", "patch"):
        for path in ("/", "/session", "/api/trajectory", "/files/x"):
            response = client.request(method.upper(), path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == "GET, HEAD"


def test_read_only_connection_refuses_writes_even_after_reconnecting(pipeline):
    from workflow_deeplabcut import processing
    from workflow_deeplabcut.dashboard.app import make_read_only

    device = pipeline.lab.Device.full_table_name
    conn = processing._new_connection()
    try:
        make_read_only(conn)
        assert conn.query("SELECT 1").fetchone()[0] == 1
        for attempt in range(2):
            with pytest.raises(Exception, match=r"(?i)read.only"):
                conn.query(f"INSERT INTO {device} (device, modality) VALUES ('ro{attempt}', 'video')")
            if conn.adapter.backend == "postgresql":
                conn.query("ROLLBACK")
                kill = "SELECT pg_terminate_backend(%s)"
            else:
                kill = "KILL %s"
            # The server drops the connection; reconnected (as database.reconnect does), still read-only.
            before = conn.connection_id
            pipeline.lab.Device.connection.query(kill, (before,))
            time.sleep(0.2)
            try:
                conn.query("SELECT 1")  # MySQL: DataJoint sees the lost connection and reconnects
            except Exception:
                conn.connect()  # PostgreSQL: as database.reconnect does
            assert conn.connection_id != before
    finally:
        conn.close()
    assert not pipeline.lab.Device & "device like 'ro%'"


def test_pages_answer_after_the_connection_was_dropped(pipeline, client):
    from workflow_deeplabcut import processing

    shared = pipeline.lab.Device.connection
    killer = processing._new_connection()
    try:
        kill = "SELECT pg_terminate_backend(%s)" if shared.adapter.backend == "postgresql" else "KILL %s"
        killer.query(kill, (shared.connection_id,))
    finally:
        killer.close()
    time.sleep(0.2)
    response = client.get("/models")
    assert response.status_code == 200 and "dash-iter1" in response.text


def test_files_only_from_the_processed_root(client, dash, processed_root, tmp_path):
    pictures = pipeline_paths(dash)
    ok = client.get(f"/files/{pictures['trajectory_plot']}")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (processed_root / "dashboard-link").symlink_to(outside)
    for path in (
        "/files/..%2F..%2F..%2Fetc%2Fpasswd",
        "/files/%2Fetc%2Fpasswd",
        "/files/qc/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "/files/dashboard-link",
    ):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "secret" not in response.text and "root:" not in response.text
    assert client.get("/files/no/such/file.png").status_code == 404
    video = client.get(f"/files/{dash_video(dash)}", headers={"range": "bytes=0-99"})
    assert video.status_code == 206 and len(video.content) == 100  # seekable in a <video>


def pipeline_paths(dash) -> dict:
    from workflow_deeplabcut.pipeline import qc

    return (qc.QCPlots & dash["key"]).fetch1()


def dash_video(dash) -> str:
    from workflow_deeplabcut.pipeline import qc

    return (qc.LabeledVideo & dash["key"]).fetch1("labeled_video_path")


def test_token_and_host_rules(pipeline, dash):
    from starlette.testclient import TestClient

    from workflow_deeplabcut.dashboard.app import LOOPBACK_HOSTS, create_app

    with TestClient(create_app(allowed_hosts=LOOPBACK_HOSTS), base_url="http://127.0.0.1:8050") as loop:
        assert loop.get("/models").status_code == 200
        assert loop.get("/models", headers={"host": "evil.example:8050"}).status_code == 400  # DNS rebinding
    with TestClient(create_app(token="s3cret-token"), base_url="http://10.1.2.3:8050") as c:
        assert c.get("/models").status_code == 401
        assert c.get("/models?token=wrong").status_code == 401
        first = c.get("/models?token=s3cret-token&x=1", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/models?x=1"
        assert "httponly" in first.headers["set-cookie"].lower()
        assert c.get("/models").status_code == 200  # the cookie
        c.cookies.clear()
        assert c.get("/models").status_code == 401
        assert c.get("/models", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/models", headers={"authorization": "Bearer nope"}).status_code == 401


# ------------------------------------------------------------------------------ serve + a real browser
def _start_serve(*args: str) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log = Path(os.environ["WORKFLOW_DLC_PROCESSED_DIR"]).parent / f"serve-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflow_deeplabcut.cli", "serve", "--port", str(port), *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "WORKFLOW_DLC_DASHBOARD_TOKEN": ""},
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited: {log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port, log
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"serve did not start: {log.read_text()}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _secrets() -> list[str]:
    """The database password this run uses (embedded: the generated one)."""
    if BACKEND == "embedded":
        from workflow_deeplabcut import embedded

        return [(Path(os.environ["WORKFLOW_DLC_EMBEDDED_DIR"]) / embedded.PASSWORD_FILE).read_text().strip()]
    password = os.environ.get("DJ_PASS", "")
    return [password] if len(password) >= 8 and password != os.environ.get("DJ_USER") else []


def test_serve_on_another_address_needs_its_printed_token(pipeline, dash):
    import httpx

    proc, port, log = _start_serve("--host", "0.0.0.0")
    try:
        deadline = time.time() + 30
        while "token=" not in log.read_text() and time.time() < deadline:
            time.sleep(0.2)
        token = re.search(r"\?token=([\w-]+)", log.read_text()).group(1)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/models").status_code == 401
        with httpx.Client(base_url=base, follow_redirects=True) as browser:
            assert browser.get(f"/models?token={token}").status_code == 200
            assert browser.get("/").status_code == 200
        assert httpx.post(f"{base}/", headers={"authorization": f"Bearer {token}"}).status_code == 405
    finally:
        _stop(proc)
    text = log.read_text()
    assert text.count(token) == 1, text  # printed once, never logged with a request
    assert "GET /models 303" in text and "GET /models 200" in text
    for secret in _secrets():
        assert secret not in text


def _wait_js(page, expression: str, timeout: int = 30_000) -> None:
    """Poll a JavaScript expression until it is true (Playwright's own wait_for_function evaluates
    strings with eval, which the dashboard's Content-Security-Policy rightly refuses)."""
    deadline = time.time() + timeout / 1000
    while not page.evaluate(expression):
        if time.time() > deadline:
            raise AssertionError(f"still false after {timeout} ms: {expression}")
        time.sleep(0.05)


def test_serve_on_a_fresh_database(pipeline):
    """Nothing run yet: no job tables, no rows. The read-only server still shows every page."""
    import datajoint as dj
    import httpx

    from workflow_deeplabcut.pipeline import SCHEMAS

    prefix = os.environ["WORKFLOW_DLC_PREFIX"] + "fresh_"
    os.environ["WORKFLOW_DLC_PREFIX"], saved = prefix, os.environ["WORKFLOW_DLC_PREFIX"]
    try:
        proc, port, log = _start_serve()
    finally:
        os.environ["WORKFLOW_DLC_PREFIX"] = saved
    try:
        base = f"http://127.0.0.1:{port}"
        for path, text in (
            ("/", "No worker is running."),
            ("/sessions", "No session matches."),
            ("/models", "No model"),
        ):
            response = httpx.get(base + path)
            assert response.status_code == 200 and text in response.text, (path, log.read_text())
        assert httpx.get(f"{base}/api/overview").json()["tables"]
    finally:
        _stop(proc)
        conn = pipeline.lab.schema.connection
        for name in reversed(list(SCHEMAS)):
            dj.Schema(prefix + name, connection=conn, create_schema=False).drop(prompt=False)


def _nonblank(path: Path) -> float:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    return pixels.std()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"Chromium was not found at {CHROMIUM}; scripts/test-services.sh installs Debian's package."
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


def test_dashboard_in_a_real_browser(pipeline, dash, browser):
    from workflow_deeplabcut import processing

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    proc, port, log = _start_serve()
    problems: list[str] = []
    html: list[str] = []
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
        page.on(
            "console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None
        )
        base = f"http://127.0.0.1:{port}"

        # Overview: the table counts of this database.
        page.goto(f"{base}/")
        done = {row["table"]: row["done"] for row in processing.status()}
        for table in ("PoseEstimation", "PoseQC", "Kinematics"):
            cell = page.locator(f'#table-status tr[data-table="{table}"] td.done')
            assert int(cell.inner_text()) == done[table], table
        _wait_js(page, "document.getElementById('diagram').complete")
        assert page.evaluate("document.getElementById('diagram').naturalWidth") > 100
        page.screenshot(path=ARTIFACTS / "overview.png", full_page=True)
        html.append(page.content())
        # Live: the failed job goes away in the database; the page follows without a reload.
        errors = page.locator('#table-status tr[data-table="PoseEstimation"] td.errors')
        failed = int(errors.inner_text())
        assert failed >= 1
        (pipeline.model.PoseEstimation.jobs & dash["failing"]).delete_quick()
        selector = '#table-status tr[data-table="PoseEstimation"] td.errors'
        _wait_js(page, f"document.querySelector('{selector}').textContent === '{failed - 1}'", timeout=15_000)

        # Sessions: filter by subject, click through to the session.
        page.click("#nav-sessions")
        page.fill("input[name=subject]", dash["session"]["subject"])
        page.click("#filters button[type=submit]")
        assert page.locator("#session-count").inner_text().startswith("1 session")
        page.screenshot(path=ARTIFACTS / "sessions.png", full_page=True)
        html.append(page.content())
        page.click("a.session-link")

        # Session: the plot renders, the cursor drives the video and the video the cursor.
        section = page.locator("section.estimation").first
        page.wait_for_selector("section.estimation[data-rendered='1']", timeout=30_000)
        lines = page.eval_on_selector_all(
            "section.estimation .plot path.js-line",
            "els => els.filter(e => (e.getAttribute('d') || '').length > 20).length",
        )
        assert lines >= 6  # x, y and likelihood of both body parts
        _wait_js(page, "document.querySelector('video.labeled-video').readyState >= 1")
        slider = section.locator("input.cursor")
        box = slider.bounding_box()
        slider.click(position={"x": box["width"] * 0.6, "y": box["height"] / 2})  # a real click
        cursor = float(section.get_attribute("data-cursor"))
        assert 3.0 < cursor < 7.0  # 60 % of a 10-second recording
        fps = dash["spec"].fps
        expected = (round(cursor * fps) + 0.5) / fps  # the labeled video starts at frame 0, same fps
        _wait_js(
            page,
            f"Math.abs(document.querySelector('video.labeled-video').currentTime - {expected}) < 0.02",
            timeout=10_000,
        )
        shape_x = page.evaluate("document.querySelector('section.estimation .plot').layout.shapes[0].x0")
        assert shape_x == pytest.approx(cursor)
        page.evaluate("document.querySelector('video.labeled-video').currentTime = 2.0")
        _wait_js(
            page,
            "Math.abs(parseFloat(document.querySelector('section.estimation').dataset.cursor) - 2.0) < 0.05",
            timeout=10_000,
        )
        points = int(section.get_attribute("data-points"))
        assert 0 < points <= 2 * 3 * dash["spec"].n_frames
        page.screenshot(path=ARTIFACTS / "session.png", full_page=True)
        html.append(page.content())

        # Body-part toggle: a click on the legend hides that part's x, y and likelihood traces.
        section.locator("g.legend g.traces").filter(has_text="tail").locator("rect.legendtoggle").click()
        hidden = (
            "document.querySelector('section.estimation .plot').data.filter(t => t.legendgroup === 'tail')"
        )
        _wait_js(page, f"{hidden}.every(t => t.visible === 'legendonly')")
        assert page.evaluate(f"{hidden}.length") == 3

        # Zoom: the plot asks for the visible window only.
        page.evaluate(
            "Plotly.relayout(document.querySelector('section.estimation .plot'), {'xaxis.range': [1, 2]})"
        )
        _wait_js(page, "document.querySelector('section.estimation').dataset.window === '30-60'")

        page.click("#nav-models")
        assert "dash-iter1" in page.content()
        page.screenshot(path=ARTIFACTS / "models.png", full_page=True)
        html.append(page.content())
        page.close()
    finally:
        _stop(proc)
    assert not problems, problems
    for name in ("overview", "sessions", "session", "models"):
        assert _nonblank(ARTIFACTS / f"{name}.png") > 10, name
    text = log.read_text() + "".join(html)
    for secret in _secrets():
        assert secret not in text
