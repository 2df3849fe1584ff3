#!/usr/bin/env bash
# A virtualenv with fastai beside the project's torch, for bench/bench_fastai.py.
#
# fastai's metadata asks for torch (and spaCy, for text); pip would pull a second
# torch (GBs). Instead: a venv whose .pth file puts the project venv's
# site-packages on its path (so torch, torchvision, pandas, matplotlib, sklearn
# come from there), plus fastai and its small pure-Python dependencies installed
# with --no-deps. Idempotent. Usage: bash bench/fastai_env.sh [.venv] [.venv-fastai]
set -euo pipefail
base="${1:-.venv}"
env="${2:-.venv-fastai}"
[ -x "$base/bin/python" ] || { echo "no $base/bin/python: run make setup first" >&2; exit 1; }
stamp="$env/.fastai-ready"
[ -f "$stamp" ] && exit 0
"$base/bin/python" -m venv "$env"
base_site=$("$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
env_site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# addsitedir (not a bare path line) so the base venv's own .pth files (ftkit's editable install) work too
echo "import site; site.addsitedir('$base_site')" > "$env_site/_ftkit_base.pth"
pip=("$env/bin/python" -m pip --disable-pip-version-check -q)
# fastai 2.8.12 pins: fastcore>=2.2.22, plum-dispatch<2.10; fastprogress>=1.1 imports python-fasthtml (heavy): <1.1. plum needs beartype + rich.
"${pip[@]}" install --no-deps "fastai>=2.8,<2.9" "fastcore>=2.2.22" "fastprogress>=1.0,<1.1" "fasttransform>=0.0.3" \
    "fastdownload>=0.0.8,<2" "plum-dispatch>=2.5,<2.10" "beartype>=0.16" "rich>=13" "markdown-it-py>=2.2" "mdurl>=0.1" \
    "pygments>=2.13"
"$env/bin/python" - <<'PY'
import fastai, torch
from fastai.vision.all import vision_learner  # noqa: F401  (fails here if a dependency is missing)
print(f"fastai {fastai.__version__} on torch {torch.__version__} from {torch.__file__}")
PY
touch "$stamp"
