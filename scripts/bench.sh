#!/usr/bin/env bash
# Install notifier with the benchmark's extras into .venv and run `notifier bench`
# (its own nats-server, provider fakes and service; results in bench-results/).
# Extra arguments go to the command (e.g. `./scripts/bench.sh --quick`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[bench]"
exec .venv/bin/notifier bench "$@"
