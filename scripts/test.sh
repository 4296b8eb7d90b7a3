#!/usr/bin/env bash
# The test command: install, make sure the database servers answer, lint, run every test.
# The suite runs on the embedded PostgreSQL and, from tests/test_backends.py, again on the
# PostgreSQL and MariaDB servers, each run with its own schema prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install-element.sh  # element-deeplabcut on DataJoint 0.14: the migration tests' source
bash scripts/test-services.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest --durations=12 "$@"
