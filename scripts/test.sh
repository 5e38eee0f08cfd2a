#!/usr/bin/env bash
# Install notifier with its test tools into .venv and run the whole test suite:
# lint, format, import layers, types, and pytest against real nats-server, aiosmtpd,
# SQLite and PostgreSQL.
# Extra arguments go to pytest (e.g. `./scripts/test.sh -k lifecycle`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/ruff check notifier tests
.venv/bin/ruff format --check notifier tests
.venv/bin/lint-imports --no-cache
.venv/bin/mypy
exec .venv/bin/pytest "$@"
