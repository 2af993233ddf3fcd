"""Sweeps and the study in MLflow: one parent run per sweep folder, executed notebooks as artifacts."""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

from .fields import TrackingWarning


@contextmanager
def sweep_parent(folder):
    """While the grid of ``folder`` runs, every MLflow run created (by its notebooks' kernels,
    which inherit the environment) is a child of one parent run named after ``folder``
    (:data:`~.mlflow_sink.PARENT_ENV`); the parent is created by the first child, so a sweep
    that tracks nothing in MLflow creates nothing. Afterwards the parent is marked finished."""
    from .mlflow_sink import PARENT_ENV

    before = os.environ.get(PARENT_ENV)
    os.environ[PARENT_ENV] = str(Path(folder).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PARENT_ENV, None)
        else:
            os.environ[PARENT_ENV] = before
        _guard("finishing the sweep's parent run", lambda: _end_parent(Path(folder)))


def _end_parent(folder: Path) -> None:
    from .mlflow_sink import PARENT_STATE, _read, client, tracking_uri

    uri = tracking_uri() if (folder / PARENT_STATE).exists() else None
    state = _read(folder / PARENT_STATE, uri) if uri else None
    if state is not None:
        client(uri).set_terminated(state["run_id"], "FINISHED")


def after_notebook(run_dir, notebook, folder) -> None:
    """Papermill executed ``notebook`` for ``run_dir``: add it (and the plots it saved) to that
    run's MLflow run, else, when the notebook trained several runs (the study), to the sweep's
    parent run. Nothing happens for runs that do not track with MLflow."""
    _guard("adding the executed notebook", lambda: _after(Path(run_dir), Path(notebook), Path(folder)))


def _after(run_dir: Path, notebook: Path, folder: Path) -> None:
    from .mlflow_sink import PARENT_STATE, STATE, _read, client, log_files, tracking_uri

    for state_file, own in ((run_dir / STATE, True), (folder / PARENT_STATE, False)):
        if state_file.exists():
            uri = tracking_uri()
            state = _read(state_file, uri)
            if state is not None:
                c = client(uri)
                if own:
                    log_files(c, state["run_id"], run_dir, notebook)
                else:
                    c.log_artifact(state["run_id"], str(notebook), artifact_path=f"notebooks/{run_dir.name}")
                return


def _guard(what: str, fn) -> None:
    try:
        fn()
    except Exception as e:  # tracking never fails a sweep
        warnings.warn(f"MLflow tracking failed while {what} ({type(e).__name__}: {e}); the sweep goes on",
                      TrackingWarning, stacklevel=3)
