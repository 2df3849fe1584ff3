#!/usr/bin/env bash
# Set up (or update) the virtual environment with everything ftkit needs.
# Idempotent: a second run installs nothing new. Called by `make setup`.
set -euo pipefail
venv="${1:-.venv}"
python="${2:-python3}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

"${pip[@]}" install -q -e ".[test,bench]"
# Data-only packages whose metadata pins torch==1.6.0 / tensorflow: no deps.
"${pip[@]}" install -q --no-deps -r requirements-nodeps.txt

# Fashion-MNIST comes from Debian (offline, 60k/10k). Installed when apt is usable.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
            || echo "warning: could not install Debian's dataset-fashion-mnist; fashion_mnist will be unavailable offline" >&2
    else
        echo "note: fashion_mnist needs Debian's package: sudo apt-get install dataset-fashion-mnist" >&2
        echo "      (or run online once: torchvision downloads it)" >&2
    fi
fi
# Debian's chromium for the real-browser test (tests/test_browser.py, driven by playwright,
# which cannot download its own browsers offline).
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
            || echo "warning: could not install Debian's chromium; the browser test will be skipped" >&2
    else
        echo "note: the browser test needs Debian's chromium: sudo apt-get install chromium" >&2
    fi
fi
echo "ftkit environment ready in $venv"
