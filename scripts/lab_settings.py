"""Write JupyterLab's overrides.json where the running JupyterLab reads it: <sys.prefix>/share/jupyter/lab/settings.

Used by `make lab` and by binder/postBuild. Keeps settings already there; sets only ours:
no news pop-up over the notebooks on first open.

    python scripts/lab_settings.py          # prints the file it wrote
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}


def settings_file(prefix: str = sys.prefix) -> Path:
    return Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def write(path: Path) -> Path:
    current = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(current, dict):
        raise SystemExit(f"{path} does not hold a JSON object; fix or remove it, then run this again")
    for plugin, values in OVERRIDES.items():
        current.setdefault(plugin, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    tmp.replace(path)  # nothing half-written
    return path


if __name__ == "__main__":
    print(write(settings_file(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)))
