"""The lessons in a real browser: JupyterLab + headless Chromium, as a learner opens them.

For notebooks 00 and 01 (copies prepared with ``fast=True`` in a temp folder):
open in JupyterLab, Run All, assert that no cell shows an error and no widget
"Error displaying widget", move a slider, press the widget's button, assert
that its output changed. Screenshots go to test-artifacts/browser/ (kept after
the run: look at them). The JupyterLab server started here is stopped at the end.

Needs Debian's ``chromium`` and Python's ``playwright``: scripts/setup.sh installs
both (chromium with apt when run as root). A non-root user runs
``sudo apt-get install chromium`` once. Without them this test is skipped with
that instruction -- except under CI (``CI`` set), where it fails.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen

pytestmark = pytest.mark.browser


def _missing(what: str) -> None:
    message = (f"{what} is not installed: run `bash scripts/setup.sh` as root (installs Debian's chromium and "
               "Python's playwright), or `sudo apt-get install chromium` and `pip install -e '.[test]'`")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _missing("Debian's chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Python's playwright")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 with a token and a free port, serving fast copies of the lessons."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    for name in ("00_tour.ipynb", "01_scratch_vs_finetune.ipynb"):
        pm.execute_notebook(str(NOTEBOOKS / name), str(root / "notebooks" / name), parameters={"fast": True},
                            prepare_only=True, progress_bar=False)
    settings = root / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No news pop-up over the notebook (what overrides.json does for `make lab` and Binder).
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    # Render every cell (JupyterLab 4 renders only the visible ones by default): the test reads all prompts.
    tracker = root / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none",
                                                                         "autoStartDefaultKernel": True}))
    token, port = uuid.uuid4().hex, _free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(root / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"), "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "server.log", "w")
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield {"url": url, "token": token, "root": root}
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright's launch() gives every browser a fresh temporary profile (--user-data-dir).
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


def _shown(page):
    """The notebook on screen: JupyterLab restores earlier tabs, hidden but still in the page."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")


def _run_all(page, timeout_s: float, shot: Path) -> None:
    """Run > Run All Cells, then wait until every code cell has an execution count."""
    nb = _shown(page)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    page.screenshot(path=str(shot))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        prompts = nb.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
        # JupyterLab renders only the cells near the viewport (windowing): the others' prompts are
        # empty placeholders. Every prompt that is drawn must show an execution count, the kernel
        # must be idle again, and the last cell (the results) must have run.
        shown = [p.strip() for p in prompts if p.strip()]
        idle = nb.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0
        last = nb.locator(".jp-CodeCell .jp-InputArea-prompt").last.inner_text().strip() if prompts else ""
        if shown and idle and last.startswith("[") and last[1:-2].isdigit() and all(
                p.startswith("[") and p[1:-2].isdigit() for p in shown):
            return
        time.sleep(2)
    page.screenshot(path=str(shot))
    raise AssertionError(f"Run All did not finish in {timeout_s} s; prompts: {prompts}")


def _errors(page) -> list[str]:
    outputs = _shown(page).locator(".jp-OutputArea-output").all_inner_texts()
    # The lessons' note "If you see 'Error displaying widget: ...', re-run this cell" is not an error.
    return [o[:500] for o in outputs if "Traceback" in o or o.strip().startswith("Error displaying widget")]


def _open(page, lab, name: str) -> None:
    # A workspace of its own, reset: only this notebook is open (not the tabs of an earlier test).
    workspace = name.removesuffix(".ipynb").replace("_", "-")
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/notebooks/{name}?reset&token={lab['token']}")
    _shown(page).locator(".jp-Cell").first.wait_for(timeout=120_000)
    select = page.locator(".jp-Dialog button", has_text="Select")
    try:  # "Select Kernel" when JupyterLab does not start the notebook's kernel by itself
        select.wait_for(timeout=5_000)
        select.click()
    except Exception:  # playwright's TimeoutError: no dialog, the kernel is starting
        pass
    # The kernel is up and idle: the first run right after start-up flaked once otherwise.
    _shown(page).locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)


CASES = {
    # notebook: (the widget's button text, slider to move, key, seconds for Run All, seconds for the button)
    "00_tour.ipynb": ("Predict", 1, "ArrowLeft", 240, 120),
    "01_scratch_vs_finetune.ipynb": ("Run the race", 2, "ArrowLeft", 1200, 900),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lesson_in_jupyterlab(name, lab, browser):
    button_text, slider, key, run_s, click_s = CASES[name]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = name.removesuffix(".ipynb")
    page = browser.new_page(viewport=VIEWPORT)
    try:
        _open(page, lab, name)
        _run_all(page, run_s, ARTIFACTS / f"{stem}-0-run-all-started.png")
        page.screenshot(path=str(ARTIFACTS / f"{stem}-1-run-all.png"))
        assert not _errors(page), _errors(page)
        tables = _shown(page).locator(".ftkit-table")
        if tables.count():  # the first formatted table, as a learner sees it at 1366 px
            tables.first.scroll_into_view_if_needed()
            tables.first.screenshot(path=str(ARTIFACTS / f"{stem}-1-first-table.png"))

        panel = _shown(page).locator(".widget-vbox", has=page.locator(".jupyter-button", has_text=button_text)).last
        panel.scroll_into_view_if_needed()
        panel.wait_for(timeout=60_000)
        button = panel.locator(".jupyter-button", has_text=button_text)
        status = panel.locator(".widget-hbox", has=page.locator(".jupyter-button", has_text=button_text)
                               ).locator(".widget-html")
        before = status.inner_text()
        image = panel.locator(".widget-image")
        assert image.count() == 1 and not image.is_visible(), "the empty image is hidden before the first run"
        handle = panel.locator(".noUi-handle").nth(slider)
        handle.focus()
        handle.press(key)
        panel.screenshot(path=str(ARTIFACTS / f"{stem}-2-slider-moved.png"))
        button.click()
        image.wait_for(state="visible", timeout=click_s * 1000)
        deadline = time.monotonic() + click_s
        while "running" in status.inner_text() and time.monotonic() < deadline:
            time.sleep(1)
        after = status.inner_text()
        panel.screenshot(path=str(ARTIFACTS / f"{stem}-3-after-click.png"))
        page.screenshot(path=str(ARTIFACTS / f"{stem}-4-page.png"))
        assert after != before and "error" not in after.lower(), (before, after)
        assert not _errors(page), _errors(page)
    finally:
        page.close()
