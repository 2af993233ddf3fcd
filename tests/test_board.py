"""TensorBoard in a real browser (issue 24): ``make board`` on a smoke run's outputs, opened in headless
Chromium (Debian's ``chromium``) through Playwright. A file of its own: test_browser's module-scoped
Playwright session must be closed before another starts (the sync API refuses to nest).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_browser import _chromium, _free_port, _wait_for_server

from ssrl_lab.notebook_params import repo_root

_SCALAR_CARD = """(tag) => {
  const card = Array.from(document.querySelectorAll('scalar-card'))
      .find(c => c.innerText.trim().split('\\n')[0] === tag);
  if (!card) return null;
  const paths = Array.from(card.querySelectorAll('line-chart svg path')).filter(p => (p.getAttribute('d') || '').length > 2);
  return {text: card.innerText, n_paths: paths.length, n_canvas: card.querySelectorAll('line-chart canvas').length};
}"""


@pytest.mark.slow
def test_make_board_shows_a_smoke_runs_scalars_in_tensorboard(smoke_corpus, tmp_path):
    """``make board`` (TensorBoard over BOARD_DIR) serves a smoke run's event files; headless Chromium
    sees the run's ``loss`` chart drawn, with the run in its legend, and no page error."""
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    from ssrl_lab.train.dino import DINOConfig, train

    outputs = tmp_path / "outputs"
    train(DINOConfig.profile("smoke", corpus=str(smoke_corpus), run_dir=str(outputs / "dino"), device="cpu",
                             epochs=2, tracking="tensorboard"), progress=False)
    port, venv = _free_port(), Path(sys.prefix)
    # the test's own environment: -o keeps make from (re)installing it (make test built it already)
    cmd = ["make", "-o", str(venv / ".installed"), "board", f"VENV={venv}", f"BOARD_DIR={outputs}",
           f"BOARD_ARGS=--host 127.0.0.1 --port {port}"]
    log = open(tmp_path / "board.log", "wb")
    proc = subprocess.Popen(cmd, cwd=str(repo_root()), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/data/runs", lambda r: "dino/tb" in json.loads(r.read()), proc,
                         tmp_path / "board.log", "make board did not serve the run")
        errors: list[str] = []
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=exe, headless=True,
                                  args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            try:
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{base}/?tagFilter=%5Eloss%24#timeseries")
                page.wait_for_function(f"() => {{ const c = ({_SCALAR_CARD})('loss'); return c && c.n_paths > 0; }}",
                                       timeout=120_000, polling=500)
                card = page.evaluate(_SCALAR_CARD, "loss")
                page.screenshot(path=str(tmp_path / "tensorboard.png"))
            finally:
                b.close()
        assert card["n_paths"] > 0 and "dino/tb" in card["text"]
        assert errors == []
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
