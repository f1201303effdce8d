#!/usr/bin/env bash
# Installs esgkit with its test extras, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export HF_HUB_OFFLINE=1
exec "${PYTHON:-python3}" -m pytest -q --durations=15 "$@"  # the slowest tests, to keep the suite under 10 minutes
