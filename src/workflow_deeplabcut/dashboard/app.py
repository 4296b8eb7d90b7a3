"""The dashboard's web app: Starlette routes, Jinja2 pages, Plotly.js served from the package.

Why this stack: Starlette is the small, well-kept ASGI toolkit under FastAPI (routing, static
files with HTTP range requests for ``<video>`` seeking, a test client), Jinja2 renders the
pages on the server with autoescaping, uvicorn serves them, and Plotly.js (taken from the
``plotly`` package's own bundle, so nothing comes from a CDN) draws zoomable, pannable plots
with legend toggles. No page needs a JavaScript build step.

Safety: only GET and HEAD are answered, the database connection is set read-only
(:func:`make_read_only`), files come only from the processed root, a token guards any
non-loopback address, and the access log never holds a query string.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import secrets
import shutil
import socket
import tempfile
import threading
import time
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import data

HERE = Path(__file__).parent
TOKEN_COOKIE = "wdlc_dashboard_token"
logger = logging.getLogger("workflow_deeplabcut.dashboard")

#: Every page's security headers: our own scripts only, no framing, no referrer (tokens in URLs).
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; media-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def plotly_js() -> Path:
    """Return the Plotly.js bundle inside the installed ``plotly`` package."""
    return Path(str(files("plotly") / "package_data" / "plotly.min.js"))


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1 or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------ guard
class Guard:
    """ASGI middleware: read-only methods, Host check, token, security headers, access log."""

    def __init__(self, app, *, token: str | None, allowed_hosts: set[str] | None):
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send):
        """Refuse, or pass the request on; add the headers; log the path, status and time."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request = Request(scope)
        status = {"code": 0}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() != "server"]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        try:
            refusal = self._refusal(request)
            if refusal is not None:
                await refusal(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            # The path only: a query string may hold the token.
            logger.info(
                "%s %s %s %.0f ms",
                request.method,
                request.url.path,
                status["code"],
                1000 * (time.perf_counter() - started),
            )

    def _refusal(self, request: Request) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse(
                "The dashboard is read-only: it answers GET and HEAD only.\n",
                405,
                headers={"allow": "GET, HEAD"},
            )
        if self.allowed_hosts is not None:
            if _host_name(request.headers.get("host", "")) not in self.allowed_hosts:
                return PlainTextResponse(
                    "Unexpected Host header: this dashboard serves this machine only (open it as "
                    "http://127.0.0.1:<port>/).\n",
                    400,
                )
        if self.token is None:
            return None
        given = request.query_params.get("token")
        if given is not None and secrets.compare_digest(given, self.token):
            rest = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, 303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        bearer = request.headers.get("authorization", "")
        offered = request.cookies.get(TOKEN_COOKIE) or (
            bearer[7:] if bearer.lower().startswith("bearer ") else ""
        )
        if offered and secrets.compare_digest(offered, self.token):
            return None
        return PlainTextResponse(
            "This dashboard needs its token: open the address that `workflow-deeplabcut serve` "
            "printed (…/?token=…), or send 'Authorization: Bearer <token>'.\n",
            401,
        )


def _host_name(header: str) -> str:
    """Return the host of a ``Host`` header, without its port (``[::1]:8050`` → ``[::1]``)."""
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0]


# ------------------------------------------------------------------------------ read-only database
def make_read_only(conn) -> None:
    """Make every transaction of ``conn`` read-only, now and after DataJoint reconnects it.

    A write through this connection then fails in the server itself, whatever the code asks.
    """
    statement = (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
        if conn.adapter.backend == "postgresql"
        else "SET SESSION TRANSACTION READ ONLY"
    )
    connect = conn.connect

    def connect_read_only():
        connect()
        conn._conn.cursor().execute(statement)

    conn.connect = connect_read_only
    conn.query(statement)


# ------------------------------------------------------------------------------ pages
_db_lock = threading.Lock()  # one DataJoint connection: one query at a time


async def _db(func, *args, **kwargs):
    """Run ``func`` in a worker thread, one at a time; reconnect once if the connection was lost."""
    from .. import database

    def call():
        with _db_lock:
            try:
                return func(*args, **kwargs)
            except Exception as err:
                if not database.is_connection_error(err):
                    raise
                logger.warning("database connection lost; reconnecting")
                database.reconnect()  # through make_read_only's hook: read-only again
                return func(*args, **kwargs)

    return await run_in_threadpool(call)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f} %"
    env.filters["num"] = lambda v, d=2: "–" if v is None else f"{v:,.{d}f}"
    env.filters["when"] = lambda v: (
        "–" if v is None else (v.isoformat(sep=" ") if hasattr(v, "isoformat") else v)
    )
    env.filters["qs"] = lambda params: urlencode(data.url_params(params))
    env.filters["tojson_compact"] = lambda v: json.dumps(v, default=str, separators=(",", ":"))
    env.globals["flag_threshold"] = data.FLAG_BELOW_PCUTOFF
    return templates


def _json(payload, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, default=_plain, separators=(",", ":")), status, media_type="application/json"
    )


def _plain(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def create_app(*, token: str | None = None, allowed_hosts: set[str] | None = None) -> Starlette:
    """Build the dashboard on the activated pipeline.

    Parameters
    ----------
    token : str, optional
        When given, every request must carry it (``?token=`` once, then a cookie; or
        ``Authorization: Bearer``).
    allowed_hosts : set of str, optional
        Host names the ``Host`` header may carry (guards a loopback server against DNS
        rebinding); ``None`` accepts any.

    Returns
    -------
    starlette.applications.Starlette
    """
    from ..settings import get_settings

    templates = _templates()
    root = Path(get_settings().processed_data_dir).resolve()
    cache: dict = {}

    def page(request, name, context, status=200):
        return templates.TemplateResponse(request, name, context, status_code=status)

    async def overview(request):
        return page(request, "overview.html", {"data": await _db(data.overview), "title": "Overview"})

    async def overview_api(request):
        return _json(await _db(data.overview))

    async def diagram(request):
        if "svg" not in cache:
            cache["svg"] = await _db(_diagram_svg)
        if cache["svg"] is None:
            return PlainTextResponse("Graphviz's dot program is not installed: no diagram.", 404)
        return Response(cache["svg"], media_type="image/svg+xml")

    async def sessions(request):
        filters = data.SessionFilter.from_params(request.query_params)
        result = await _db(data.sessions, filters)
        return page(request, "sessions.html", {"data": result, "filters": filters, "title": "Sessions"})

    async def session_view(request):
        key = data.parse_session_key(request.query_params)
        result = await _db(data.session_page, key)
        title = f"{result['key']['subject']} · {result['key']['session_datetime']}"
        return page(request, "session.html", {"data": result, "title": title})

    async def trajectory_api(request):
        key = data.parse_estimation_key(request.query_params)
        params = request.query_params
        try:
            start = float(params["start"]) if params.get("start") else None
            stop = float(params["stop"]) if params.get("stop") else None
            buckets = min(max(int(params.get("buckets", data.DEFAULT_BUCKETS)), 10), 5000)
        except ValueError:
            return _json({"error": "start and stop are seconds, buckets a whole number"}, 400)
        return _json(await _db(data.trajectory, key, start, stop, buckets))

    async def models_view(request):
        rows = await _db(data.models)
        return page(
            request, "models.html", {"models": rows, "projects": data.iterations(rows), "title": "Models"}
        )

    async def processed_file(request):
        relative = request.path_params["path"]
        target = (root / relative).resolve()
        if Path(relative).is_absolute() or not target.is_relative_to(root):
            return PlainTextResponse("Refused: files are served from the processed root only.", 403)
        if not target.is_file():
            return PlainTextResponse("No such file under the processed root.", 404)
        return FileResponse(target)

    async def download_trajectory(request):
        key = data.parse_estimation_key(request.query_params)
        text = await _db(_trajectory_csv, key)
        name = f"{key['subject']}_{key['recording_id']}_{key['model_name']}.csv".replace("/", "_")
        return Response(
            text, media_type="text/csv", headers={"content-disposition": f'attachment; filename="{name}"'}
        )

    async def download_nwb(request):
        key = data.parse_session_key(request.query_params)
        folder = Path(tempfile.mkdtemp(prefix="wdlc-dashboard-"))
        name = f"{key['subject']}_{key['session_datetime']:%Y%m%d-%H%M%S}.nwb".replace("/", "_")
        try:
            path = await _db(_export_nwb, key, folder / name)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(
            path,
            filename=name,
            media_type="application/x-nwb",
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    async def plotly(request):
        return FileResponse(
            plotly_js(), media_type="text/javascript", headers={"cache-control": "max-age=86400"}
        )

    async def not_found(request, exc):
        if request.url.path.startswith(("/api/", "/download/")):
            return _json({"error": str(exc)}, 404)
        return page(request, "error.html", {"message": str(exc), "title": "Not found"}, 404)

    async def bad_input(request, exc):
        return page(request, "error.html", {"message": str(exc), "title": "Cannot show this"}, 400)

    async def failure(request, exc):
        from .. import database

        if database.is_connection_error(exc):
            status, message = 503, "The database does not answer; this page works again once it is back."
        else:
            status, message = 500, f"The dashboard failed on this page ({type(exc).__name__})."
        logger.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, str(exc)[:300])
        return page(request, "error.html", {"message": message, "title": "Error"}, status)

    from ..errors import InputError

    routes = [
        Route("/", overview),
        Route("/api/overview", overview_api),
        Route("/diagram.svg", diagram),
        Route("/sessions", sessions),
        Route("/session", session_view),
        Route("/api/trajectory", trajectory_api),
        Route("/models", models_view),
        Route("/files/{path:path}", processed_file),
        Route("/download/trajectory.csv", download_trajectory),
        Route("/download/session.nwb", download_nwb),
        Route("/static/plotly.min.js", plotly),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={data.NotFound: not_found, InputError: bad_input, Exception: failure},
    )
    return Guard(app, token=token, allowed_hosts=allowed_hosts)


def _diagram_svg() -> str | None:
    if shutil.which("dot") is None:
        return None
    from ..export import pipeline_diagram

    return pipeline_diagram().svg_string()


def _trajectory_csv(key: dict) -> str:
    from ..pipeline import model

    if not model.PoseEstimation & key:
        raise data.NotFound(f"no pose estimation {data.url_params(key)}")
    return model.PoseEstimation.get_trajectory(key).to_csv()


def _export_nwb(key: dict, path: Path) -> Path:
    from ..nwb import export_session
    from ..pipeline import session

    if not session.Session & key:
        raise data.NotFound(f"no session {data.url_params(key)}")
    return export_session(key, path)


# ------------------------------------------------------------------------------ serving
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def serve(host: str = "127.0.0.1", port: int = 8050, token: str | None = None, say=print) -> None:
    """Serve the dashboard until interrupted.

    Parameters
    ----------
    host : str
        Address to bind. A non-loopback address needs a token: ``token`` or one generated here
        and printed once.
    port : int
        TCP port.
    token : str, optional
        The token every request must carry.
    say : callable
        Receives the one line that says where the dashboard is.
    """
    import uvicorn

    from .. import database, processing
    from ..pipeline import activate

    token = token or None  # an empty setting is no token
    loopback = is_loopback(host)
    generated = token is None and not loopback
    if generated:
        token = secrets.token_urlsafe(24)
    activate()
    # DataJoint declares a jobs table at its first access: declare them now, as any command
    # does, so that the read-only connection never has to.
    processing.ensure_job_tables(processing.select_tables())
    make_read_only(database.connect())
    app = create_app(token=token, allowed_hosts=LOOPBACK_HOSTS if loopback else None)
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host  # all addresses: name one
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/"
    if generated:
        say(f"Dashboard: {url}?token={token} (read-only; this token is shown once; Ctrl+C stops it)")
    elif token:
        say(f"Dashboard: {url} (read-only; open it with ?token=<your token>; Ctrl+C stops it)")
    else:
        say(f"Dashboard: {url} (read-only, this machine only; Ctrl+C stops it)")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", server_header=False)
