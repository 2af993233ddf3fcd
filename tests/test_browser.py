"""JupyterLab in a real browser: 03_ssrl and 05_explore run in JupyterLab, driven in headless
Chromium (Debian's ``chromium``) through Playwright, on the session's smoke corpus and runs.

Checks: running all cells leaves no error output; plotly figures render with data; widgets
render (no "Error displaying widget"); moving the explorer's epoch slider moves the map's points;
picking a cluster lists members with ``<audio>`` players that have a source. Screenshots go to
the test's temporary folder.

Needs ``chromium`` (``apt-get update && apt-get install -y chromium``) and ``playwright``
(the dev extras). Under CI (``CI=true``) a missing one fails the test; elsewhere it skips.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from ssrl_lab.notebook_params import repo_root

NB_DIR = repo_root() / "notebooks"
INSTALL = "install it with: apt-get update && apt-get install -y chromium; pip install -e '.[dev]' (playwright)"


def _chromium() -> str:
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (Python package)")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing.append("chromium (Debian package)")
    if missing:
        msg = f"browser test needs {' and '.join(missing)}: {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def _wait_for_server(url: str, ready, proc, log_path: Path, what: str, timeout_s: float = 120) -> None:
    """Poll ``url`` until ``ready(response)`` is true; raise with the server's log tail when
    ``proc`` exits or ``timeout_s`` passes first."""
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if ready(r):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{what}: {Path(log_path).read_text()[-3000:]}")
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_root(smoke_corpus, smoke_dino, tmp_path_factory):
    """A folder with the two notebooks, parameterised for the smoke runs (papermill, not executed)."""
    import papermill as pm

    from ssrl_lab.train.ssrl import SSRLConfig, train

    root = tmp_path_factory.mktemp("lab")
    ssrl_dir = root / "runs" / "ssrl"
    # evaluated (so snapshotted) at both epochs: the explorer's slider has epochs 0, 1 and 2
    train(SSRLConfig.profile("smoke", corpus=str(smoke_corpus), run_dir=str(ssrl_dir), dino_run=str(smoke_dino),
                             device="cpu", eval_every=1, snapshots={"chunk_s": 1.0}), progress=False)
    common = dict(profile="smoke", corpus=str(smoke_corpus), run_dir=str(ssrl_dir))
    pm.execute_notebook(str(NB_DIR / "03_ssrl.ipynb"), str(root / "03_ssrl.ipynb"), prepare_only=True,
                        kernel_name="python3", parameters=dict(common, dino_run=str(smoke_dino)))
    pm.execute_notebook(str(NB_DIR / "05_explore.ipynb"), str(root / "05_explore.ipynb"), prepare_only=True,
                        kernel_name="python3", parameters=dict(common, runs_root=str(root / "runs"), method="pca",
                                                               page_size=5))
    # a run that trains inside JupyterLab (so that its progress bar shows): a fresh two-epoch DINO
    pm.execute_notebook(str(NB_DIR / "01_dino.ipynb"), str(root / "01_dino.ipynb"), prepare_only=True,
                        kernel_name="python3", parameters=dict(profile="smoke", corpus=str(smoke_corpus),
                                                               run_dir=str(root / "live-dino"), epochs=2,
                                                               device="cpu"))
    return root


@pytest.fixture(scope="module")
def lab(lab_root, tmp_path_factory):
    """A running ``jupyter lab`` over ``lab_root``: ``(base_url, token)``."""
    _chromium()
    tmp = tmp_path_factory.mktemp("lab-home")
    settings = tmp / "settings"
    # render every cell (no windowing), so that figures and widgets of all cells are in the page
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)  # no news pop-up over the screenshots
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), "ssrl-lab-test-token"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo_root()), os.environ.get("PYTHONPATH", "")]),
               JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               IPYTHONDIR=str(tmp / "ipython"), MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={lab_root}",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           "--expose-app-in-browser"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "jupyter.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(lab_root))
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", lambda r: r.status == 200, proc,
                         tmp / "jupyter.log", "jupyter lab did not start")
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


_CELLS_DONE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const errored = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
  const done = cells.every(c => c.model.executionCount !== null);
  return (errored || done) && w.sessionContext.session.kernel.status === 'idle';
}"""

_PLOTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
  n_traces: (el._fullData || []).length,
  n_points: (el._fullData || []).reduce((s, t) => s + ((t.x && t.x.length) || (t.values && t.values.length)
             || (t.link && t.link.value && t.link.value.length) || (t.z && t.z.length) || 0), 0),
  meta: el.layout && el.layout.meta, widget: !!el.closest('.jupyter-widgets'),
  title: el.layout && el.layout.title && el.layout.title.text}))"""

_MAP_XY = """() => {
  const maps = Array.from(document.querySelectorAll('.js-plotly-plot'))
      .filter(el => el.layout && el.layout.meta === 'ssrl-lab-explorer-map' && el.closest('.jupyter-widgets'));
  if (!maps.length) return null;
  const el = maps[maps.length - 1];
  return {x: Array.from(el._fullData[0].x).slice(0, 50), y: Array.from(el._fullData[0].y).slice(0, 50),
          title: el.layout.title.text};
}"""


def _run_all(page, base, token, name, shots: Path) -> dict:
    """Open ``name``, run all cells, save; returns the saved notebook's error outputs and page text."""
    # a workspace of its own, so that JupyterLab restores no other notebook's tab
    page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={token}")
    page.wait_for_function("""(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === name && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel
               && w.sessionContext.session.kernel.status === 'idle' && w.content && w.content.widgets.length > 0; }""",
                           arg=name, timeout=180_000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_timeout(1000)
    page.wait_for_function(_CELLS_DONE, timeout=300_000, polling=500)
    page.wait_for_timeout(2500)  # let figures and widgets finish drawing
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / f"{Path(name).stem}.png"), full_page=True)
    return {"text": page.inner_text("body")}


def _errors(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.get("output_type") == "error"]


def _open_and_run(browser, lab, lab_root, name, shots, console_errors):
    """A new page that runs all of ``name``: no error output, no broken widget; returns (page, state)."""
    base, token = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    state = _run_all(page, base, token, name, shots)
    assert _errors(lab_root / name) == []
    assert "Error displaying widget" not in state["text"]
    return page, state


@pytest.mark.slow
def test_03_and_05_in_jupyterlab(lab, lab_root, browser, tmp_path):
    # -- 03_ssrl ---------------------------------------------------------------------------
    console_errors = []
    page, state = _open_and_run(browser, lab, lab_root, "03_ssrl.ipynb", tmp_path, console_errors)
    plots = page.evaluate(_PLOTS)
    assert len(plots) >= 8, plots
    assert all(p["n_traces"] > 0 for p in plots), plots
    assert sum(p["n_points"] > 0 for p in plots) >= 8, plots
    audio = page.eval_on_selector_all("audio", "els => els.map(e => e.getAttribute('src') || '')")
    assert len(audio) == 10 and all(a.startswith("data:audio/wav;base64,") for a in audio), len(audio)

    page.close()

    # -- 05_explore ------------------------------------------------------------------------
    page, state = _open_and_run(browser, lab, lab_root, "05_explore.ipynb", tmp_path, console_errors)
    plots = page.evaluate(_PLOTS)
    assert all(p["n_traces"] > 0 and p["n_points"] > 0 for p in plots), plots
    before = page.evaluate(_MAP_XY)
    assert before is not None and len(before["x"]) > 0, plots  # the explorer's map is drawn at once
    assert "ssrl teacher, epoch 2" in before["title"]
    # every member row has a player with a source (blob: URL of the widget's WAV bytes)
    srcs = page.eval_on_selector_all(".jupyter-widgets audio", "els => els.map(e => e.getAttribute('src') || '')")
    assert srcs and all(s for s in srcs), srcs

    # move the epoch slider one step to the left: the same figure gets new coordinates
    handle = page.locator(".widget-slider:has(label:text-is('epoch')) .noUi-handle").last
    handle.focus()
    handle.press("ArrowLeft")
    page.wait_for_function(f"() => {{ const f = ({_MAP_XY})(); return f && f.title !== {json.dumps(before['title'])}; }}",
                           timeout=60_000)
    after = page.evaluate(_MAP_XY)
    assert "ssrl teacher, epoch 1" in after["title"], after["title"]
    assert after["x"] != before["x"] or after["y"] != before["y"]

    # pick another cluster: its members are listed with audio players
    select = page.locator(".widget-dropdown:has(label:text-is('cluster')) select").last
    options = select.locator("option").all_inner_texts()
    assert len(options) >= 2
    select.select_option(index=len(options) - 1)
    wanted = options[-1].split(":")[0]  # "c12"
    page.wait_for_function(f"() => document.body.innerText.includes('cluster {wanted},')", timeout=60_000)
    page.wait_for_timeout(1000)
    srcs = page.eval_on_selector_all(".jupyter-widgets audio", "els => els.map(e => e.getAttribute('src') || '')")
    assert srcs and all(s.startswith(("blob:", "data:")) for s in srcs), srcs
    # click a point of the map: that utterance plays (a player appears) and its label history is drawn
    n_audio = len(srcs)
    page.evaluate(_MAP_XY.replace("return {x:", "el.scrollIntoView({block: 'center'}); return {x:"))
    page.wait_for_timeout(1000)
    xy = page.evaluate(_MAP_XY.replace("return {x:", """const fl = el._fullLayout, r = el.getBoundingClientRect();
      return {px: r.left + fl._size.l + fl.xaxis.l2p(el._fullData[0].x[0]),
              py: r.top + fl._size.t + fl.yaxis.l2p(el._fullData[0].y[0]), x:"""))
    page.mouse.move(xy["px"], xy["py"])
    page.wait_for_timeout(500)
    page.mouse.click(xy["px"], xy["py"])
    page.wait_for_function("() => document.body.innerText.includes('now playing ')", timeout=60_000)
    page.wait_for_timeout(1500)
    srcs = page.eval_on_selector_all(".jupyter-widgets audio", "els => els.map(e => e.getAttribute('src') || '')")
    assert len(srcs) == n_audio + 1 and all(srcs), srcs
    n_hist = page.evaluate("() => Array.from(document.querySelectorAll('.jupyter-widgets .js-plotly-plot'))"
                           ".filter(el => (el.layout.title.text || '').startsWith('label history of')).length")
    assert n_hist == 1
    explorer = page.locator(".jp-OutputArea-output:has(.widget-slider)").last
    explorer.scroll_into_view_if_needed()
    explorer.screenshot(path=str(tmp_path / "explorer.png"))
    page.screenshot(path=str(tmp_path / "05_explore_after.png"), full_page=True)
    page.close()

    # -- 01_dino trains in the browser: a tqdm.auto widget bar per stage, with the progress line under it
    page, state = _open_and_run(browser, lab, lab_root, "01_dino.ipynb", tmp_path, console_errors)
    bars = page.evaluate("""() => Array.from(document.querySelectorAll('.jp-OutputArea-output .widget-hprogress, '
        + '.jp-OutputArea-output .widget-progress')).map(el => {
          const box = el.closest('.widget-hbox') || el.parentElement;
          return {text: box ? box.innerText : '', width: el.getBoundingClientRect().width}; })""")
    assert bars and all(b["width"] > 0 for b in bars), bars
    assert any("2/2" in b["text"] for b in bars), bars  # the bar ran to the end of both epochs
    assert "[progress] dino" in state["text"] and "epoch 2/2" in state["text"]
    bar = page.locator(".jp-OutputArea-output:has(.widget-hbox)").first
    bar.scroll_into_view_if_needed()
    bar.screenshot(path=str(tmp_path / "progress_bar.png"))
    assert not console_errors, console_errors
    print(f"screenshots in {tmp_path}")

