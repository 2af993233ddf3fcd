"""Executing a notebook headless with papermill, its progress streamed live to this terminal.

:func:`execute` is what ``python -m ssrl_lab.demo`` and ``python -m ssrl_lab.sweep`` call:

* the kernel's stderr (where :mod:`ssrl_lab.progress` writes one line per epoch, and where
  warnings go) is copied to this process's stderr as it arrives (papermill's ``stderr_file``),
  so a long training cell is no longer silent; stdout and figures stay in the executed notebook;
* the kernel is started with ``--IPKernelApp.log_level=ERROR``: its "running over TCP without
  encryption" warning (the kernel and papermill talk over loopback) is not printed on every run;
* papermill's own INFO lines are left out (the caller says which notebook runs where).

From the shell, ``papermill --stderr-file /dev/stderr in.ipynb out.ipynb ...`` streams the same
lines.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Mapping

KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


def execute(src, dst, parameters: Mapping | None = None, kernel: str = "python3", cwd=None,
            live: bool = True) -> Path:
    """Run notebook ``src`` into ``dst`` with ``parameters``; raises papermill's
    ``PapermillExecutionError`` (naming the failing cell) when a cell fails."""
    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.WARNING)
    src, dst = Path(src), Path(dst)
    pm.execute_notebook(str(src), str(dst), parameters=dict(parameters or {}), kernel_name=kernel, progress_bar=False,
                        cwd=str(cwd if cwd is not None else src.resolve().parent),
                        stderr_file=sys.stderr if live else None, extra_arguments=list(KERNEL_ARGS))
    return dst
