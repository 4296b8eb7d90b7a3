"""One log file per DeepLabCut job: the pipeline's output stays its own.

DeepLabCut prints a great deal while it trains, evaluates and analyses (progress bars, its
configuration, deprecation warnings): about 200 lines per demo. A job that runs DeepLabCut does
so inside :func:`captured`, which sends everything written to standard output and standard
error (file descriptors 1 and 2, so C libraries and child processes too) to
``<processed root>/logs/<Table>/<key>.log``. A failed job's error names that file.
``WORKFLOW_DLC_VERBOSE=1`` (the CLI's ``--verbose``) leaves the output on the terminal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

_lock = threading.Lock()  # one capture at a time per process: the file descriptors are shared


def verbose() -> bool:
    """Whether DeepLabCut's output is shown rather than captured (``WORKFLOW_DLC_VERBOSE``)."""
    return os.environ.get("WORKFLOW_DLC_VERBOSE", "").lower() in ("1", "true", "yes")


def log_path(table: str, key: dict) -> Path:
    """Return the log file of one job: ``<processed root>/logs/<table>/<key values>.log``."""
    from .settings import get_settings

    parts = []
    for value in key.values():
        if isinstance(value, dt.datetime):
            value = value.strftime("%Y%m%d-%H%M%S")
        parts.append(re.sub(r"[^A-Za-z0-9_.-]+", "-", str(value)).strip("-") or "_")
    return get_settings().processed_data_dir / "logs" / table / ("_".join(parts)[:200] + ".log")


@contextlib.contextmanager
def captured(table: str, key: dict) -> Iterator[Path | None]:
    """Send all output written inside the block to the job's log file (appended).

    Yields the log's path (None when :func:`verbose`). An exception leaving the block gets
    the path appended to its message, so the job's stored error says where to look.
    """
    if verbose():
        yield None
        return
    path = log_path(table, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, open(path, "ab") as log, open(path, "a", buffering=1) as text:
        log.write(f"\n==== {dt.datetime.now().isoformat(timespec='seconds')} {table} {key}\n".encode())
        log.flush()
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            # Python's own streams too: they may not be file descriptors 1 and 2 (a test runner's).
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                try:
                    yield path
                except BaseException as err:
                    _name_log(err, path)
                    raise
                finally:
                    _flush(text)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _flush(stream) -> None:
    with contextlib.suppress(Exception):
        stream.flush()


def _name_log(err: BaseException, path: Path) -> None:
    """Append the log's path to an exception's message (its first argument), when it is text."""
    note = f" (DeepLabCut's output: {path})"
    if err.args and isinstance(err.args[0], str) and note not in err.args[0]:
        err.args = (err.args[0] + note, *err.args[1:])


__all__ = ["captured", "log_path", "verbose"]
