"""Benchmark: how long a user waits before the pipeline answers, in fresh processes.

Rounds interleave (this machine is noisy; compare within a round) four commands, each a new
Python process timed from start to exit:

- ``baseline``: ``python -c "import datajoint"`` (DataJoint's own import: the floor);
- ``cold``: a fresh data folder: initdb, start the embedded PostgreSQL, declare every table,
  stop it at exit (a user's very first command);
- ``restart``: the same folder again, server stopped: start it, find the tables, stop it
  (every later command on a laptop);
- ``running``: the server kept running by another process: connect and find the tables.

It prints each one's median seconds, the median per-round ratio to the baseline (min-max),
and which heavy libraries the import loaded (none should be: they load when used). With
``--demo`` it also times the second ``workflow-deeplabcut demo`` (everything reused).

    python benchmarks/startup.py [--rounds 5] [--demo]

Goals (issue 9): cold <= 5 s, running <= 2 s, import with the server running <= 3.5 s;
the second demo <= 5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("deeplabcut", "torch", "pynwb", "movement", "cv2", "matplotlib", "numba")
IMPORT = (
    "import sys, workflow_deeplabcut.pipeline; "
    f"print('heavy:', sorted(m for m in {HEAVY!r} if m in sys.modules))"
)


def _run(args: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return elapsed, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="also time the second demo")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wdlc-start-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "WORKFLOW_DLC_"))}
    base_env.update(WORKFLOW_DLC_DATABASE="embedded", WORKFLOW_DLC_PREFIX="startup_", MPLBACKEND="Agg")
    py = [sys.executable, "-c"]
    times: dict[str, list[float]] = {k: [] for k in ("baseline", "cold", "restart", "running")}
    heavy = ""
    try:
        running_dir = work / "running"
        running_env = {
            **base_env,
            "WORKFLOW_DLC_EMBEDDED_DIR": str(running_dir),
            "HOME": str(work / "home-r"),
        }
        _run([*py, "import workflow_deeplabcut.pipeline"], running_env)  # declare once
        holder = subprocess.Popen(
            [*py, "import sys, workflow_deeplabcut.pipeline; sys.stdin.read()"],
            env=running_env,
            stdin=subprocess.PIPE,
        )
        time.sleep(3)
        try:
            for i in range(args.rounds):
                cold_env = {
                    **base_env,
                    "WORKFLOW_DLC_EMBEDDED_DIR": str(work / f"cold{i}"),
                    "HOME": str(work / f"home{i}"),
                }
                restart_env = {**base_env, "WORKFLOW_DLC_EMBEDDED_DIR": str(work / f"restart{i}")}
                _run([*py, "import workflow_deeplabcut.pipeline"], restart_env)  # untimed: initdb, declare
                order = ["baseline", "cold", "restart", "running"]
                order = order[i % 4 :] + order[: i % 4]  # rotate: no command always runs first
                for name in order:
                    if name == "baseline":
                        elapsed, _ = _run([*py, "import datajoint"], base_env)
                    elif name == "cold":
                        elapsed, _ = _run([*py, IMPORT], cold_env)
                    elif name == "restart":
                        elapsed, _ = _run([*py, IMPORT], restart_env)
                    else:
                        elapsed, out = _run([*py, IMPORT], running_env)
                        heavy = out.strip().splitlines()[-1]
                    times[name].append(elapsed)
        finally:
            holder.stdin.close()
            holder.wait(timeout=60)
        demo = None
        if args.demo:
            demo_env = {**base_env, "HOME": str(work / "home-demo")}
            demo_dir = work / "demo"
            cli = [sys.executable, "-m", "workflow_deeplabcut.cli", "demo", "--directory", str(demo_dir)]
            _run(cli, demo_env)  # the first demo trains and runs everything
            demo = []
            for _ in range(args.rounds):
                demo.append(_run(cli, demo_env)[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    goals = {"cold": 5.0, "restart": None, "running": 2.0}
    base = times["baseline"]
    print(f"rounds={args.rounds}  baseline (import datajoint) median {statistics.median(base):.2f} s")
    for name, goal in goals.items():
        values = times[name]
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        met = (
            ""
            if goal is None
            else f"  goal <= {goal:g} s: {'met' if statistics.median(values) <= goal else 'MISSED'}"
        )
        print(
            f"{name:<8} median {statistics.median(values):5.2f} s  ({min(values):.2f}-{max(values):.2f})  "
            f"ratio to baseline {statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f}){met}"
        )
    print(f"import of the pipeline with the server running: {heavy} (heavy libraries loaded)")
    if demo:
        med = statistics.median(demo)
        print(
            f"second demo: median {med:.1f} s ({min(demo):.1f}-{max(demo):.1f})  "
            f"goal <= 5 s: {'met' if med <= 5 else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
