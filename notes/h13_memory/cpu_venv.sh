#!/usr/bin/env bash
# A measurement-only environment with PyTorch's CPU wheels, as Binder installs them
# (binder/requirements.txt), for the kernels' peak memory. Not the project's set-up.
#
# This machine has torch 2.13.0+cpu on local disk (/opt/wheels) but no CPU build of
# torchvision: PyPI's torchvision 0.28.0 (built against CUDA torch 2.13) is used, and
# its C operators (nms, roi_align, image decoding; ftkit uses none of them) cannot load,
# so the module that registers their fake kernels is emptied. Models and transforms work.
set -euo pipefail
env="${1:-/tmp/cpuvenv}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
python3.11 -m venv "$env"
pip=("$env/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
"${pip[@]}" install --no-deps torchvision==0.28.0
: > "$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torchvision/_meta_registrations.py"
(cd "$root" && "${pip[@]}" install -e ".[test,bench]" && "${pip[@]}" install --no-deps -r requirements-nodeps.txt)
"$env/bin/python" -c "import torch, torchvision, ftkit; print(torch.__version__, torchvision.__version__)"
