#!/usr/bin/env bash
# The main job on the embedded default, installing what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1
exec "${PYTHON:-python3}" -m esgkit.core.cli demo "$@"
