"""MLflow back-end: one MLflow run per run directory, its id kept in ``<run_dir>/mlflow.json``."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from ..utils.io import atomic_write_json
from .fields import flat_config, scalars
from .tracker import Sink

#: the run directory's record of its MLflow run (``run_id``, ``tracking_uri``, ``experiment_id``)
STATE = "mlflow.json"
#: a sweep folder's record of its parent run
PARENT_STATE = "mlflow_parent.json"
#: set by :func:`ssrl_lab.sweep.run_grid` to the sweep's folder: every run created meanwhile is a
#: child of one parent run named after that folder (created by the first child)
PARENT_ENV = "SSRL_MLFLOW_PARENT"
#: the local store when ``MLFLOW_TRACKING_URI`` is unset (relative to the repository root)
LOCAL_STORE = "outputs/mlruns"
EXPERIMENT = "ssrl-lab"
FINAL = "final/"
#: MLflow's HTTP retries and timeout unless the user set them: a server that is down costs
#: seconds before the run warns, not MLflow's default of minutes
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///<repo>/outputs/mlruns/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    from ..notebook_params import resolve_path

    store = resolve_path(LOCAL_STORE)
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def client(uri: str):
    """An ``MlflowClient`` for ``uri`` (short HTTP retries, see :data:`HTTP_DEFAULTS`)."""
    from mlflow.tracking import MlflowClient

    if uri.startswith(("http://", "https://")):
        for k, v in HTTP_DEFAULTS.items():
            os.environ.setdefault(k, v)
    return MlflowClient(tracking_uri=uri)


def experiment_id(c, uri: str) -> str:
    """The experiment ``$MLFLOW_EXPERIMENT_NAME`` (default ``ssrl-lab``), created when missing; in a
    sqlite store its artifacts go to ``artifacts/`` beside the database file."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return c.create_experiment(name, artifact_location=location)


def run_name(path: Path) -> str:
    """The run directory's path below ``outputs/`` (else its last three parts)."""
    from ..notebook_params import resolve_path

    path = path.resolve()
    try:
        return str(path.relative_to(resolve_path("outputs").resolve()))
    except ValueError:
        return "/".join(path.parts[-3:])


def _read(path: Path, uri: str) -> dict | None:
    """A state file when it exists and names ``uri`` (a run in another store is not ours)."""
    if not path.exists():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))
    return state if state.get("tracking_uri") == uri else None


def parent_run(c, uri: str, exp_id: str) -> str | None:
    """The parent run's id when :data:`PARENT_ENV` names a sweep folder (created on first use)."""
    folder = os.environ.get(PARENT_ENV)
    if not folder:
        return None
    folder = Path(folder)
    state = _read(folder / PARENT_STATE, uri)
    if state is not None:
        return state["run_id"]
    run = c.create_run(exp_id, run_name=run_name(folder), tags={"ssrl.sweep": str(folder)})
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / PARENT_STATE, {"run_id": run.info.run_id, "tracking_uri": uri, "experiment_id": exp_id})
    return run.info.run_id


def _batches(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]


class MLflowSink(Sink):
    """A run's params (the flattened config), its lines' scalars per step, and at the end the final
    results (``final/eer``, ...) and artifacts (``results.json``, ``plots/``); the executed notebook
    is added by the sweep (:func:`log_files`). The run id is stored in ``<run_dir>/mlflow.json``
    when the run is created: a resumed run logs into the same MLflow run and skips the steps that
    run already holds (an exact resume recomputes them identically). Histograms are TensorBoard's
    only."""

    name = "mlflow"

    def __init__(self, run_dir, config: Mapping[str, Any]) -> None:
        self.path, self.config = Path(run_dir), dict(config)
        self.client = self.run_id = None
        self.done_until = -1  # the highest step the MLflow run already holds

    def open(self, first_step: int) -> None:
        from mlflow.entities import Param

        uri = tracking_uri()
        self.client = c = client(uri)
        state = _read(self.path / STATE, uri)
        if state is not None:
            self.run_id = state["run_id"]
            c.update_run(self.run_id, status="RUNNING")
            held = c.get_run(self.run_id).data.metrics
            self.done_until = max((m.step for k in held for m in c.get_metric_history(self.run_id, k)), default=-1)
            return
        exp_id = experiment_id(c, uri)
        tags = {"ssrl.run_dir": str(self.path.resolve())}
        parent = parent_run(c, uri, exp_id)
        if parent:
            tags["mlflow.parentRunId"] = parent
        self.run_id = c.create_run(exp_id, run_name=run_name(self.path), tags=tags).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in flat_config(self.config).items()]
        for chunk in _batches(params, 100):
            c.log_batch(self.run_id, params=chunk)
        atomic_write_json(self.path / STATE, {"run_id": self.run_id, "tracking_uri": uri, "experiment_id": exp_id})

    def _metrics(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for chunk in _batches([Metric(k, v, now, step) for k, v in values.items()], 1000):
            self.client.log_batch(self.run_id, metrics=chunk)

    def log(self, step: int, values: dict[str, float], histograms: Mapping[str, Any]) -> None:
        if step > self.done_until:
            self._metrics(step, values)

    def finish(self, step: int, results: Mapping[str, Any]) -> None:
        self._metrics(step, {FINAL + k: v for k, v in scalars(results).items()})
        log_files(self.client, self.run_id, self.path)
        self.client.set_terminated(self.run_id, "FINISHED")


def log_files(c, run_id: str, run_dir: Path, notebook: Path | None = None) -> None:
    """``results.json``, the HTML plots (``plots/``) and ``notebook`` as artifacts of ``run_id``."""
    if (run_dir / "results.json").exists():
        c.log_artifact(run_id, str(run_dir / "results.json"))
    plots = sorted((run_dir / "plots").glob("*.html")) if (run_dir / "plots").is_dir() else []
    if plots and (run_dir / "plots" / "plotly.min.js").exists():  # the pages load it from beside them
        plots.append(run_dir / "plots" / "plotly.min.js")
    for p in plots:
        c.log_artifact(run_id, str(p), artifact_path="plots")
    if notebook is not None and Path(notebook).exists():
        c.log_artifact(run_id, str(notebook))
