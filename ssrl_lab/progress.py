"""Live progress: one line per epoch of every training stage, with ETAs for the stage and the run.

Every trainer writes its per-epoch record through :meth:`ssrl_lab.train.run.RunDir.log_metrics`;
the run directory calls :func:`begin` when it is opened and :func:`report` for each record, so
every trainer (DINO, the iterative rounds, SSRL, supervised, the random-init evaluation) reports
the same way without code of its own. A line reads::

    [progress] ssrl  epoch 4/12  loss 5.321  clusters 487  NMI 0.889  clean 0.81  EER 7.40  19.7 s/epoch  ETA ssrl 2m38s, run 3m10s

Where the lines go (``SSRL_LAB_PROGRESS``):

* ``auto`` (default): in a kernel started by JupyterLab / Notebook (jupyter_server sets
  ``JPY_SESSION_NAME``) a ``tqdm.auto`` widget bar per stage, with the same line under it;
  everywhere else (papermill, scripts, the CLIs) plain lines on stderr, one per epoch, which
  papermill's ``stderr_file`` / ``--stderr-file`` or ``log_output`` streams live;
* ``lines``, ``bar``: force one of the two; ``off``: nothing.

The whole-run ETA needs to know the stages still ahead. A driver that runs several stages
(``python -m ssrl_lab.demo``, a study) writes a plan with :func:`write_plan` and names it in
``SSRL_LAB_PLAN``; notebook kernels inherit the variable. A plan lists the steps in order with
their run directories and estimated seconds; the stages ahead are counted at their estimates,
scaled by how fast the current stage runs against its own estimate.

Reporting never stops training: an error in here is logged once and ignored.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

log = logging.getLogger("ssrl_lab.progress")

PROGRESS_ENV = "SSRL_LAB_PROGRESS"
PLAN_ENV = "SSRL_LAB_PLAN"
MODES = ("auto", "lines", "bar", "off")
PREFIX = "[progress]"

#: Records that are not training epochs (setup or per-round summaries).
_NON_EPOCH_STAGES = ("kmeans", "iterative", "random", "supervised-eval")


# -- plans -------------------------------------------------------------------------------------
@dataclass
class PlanStep:
    """One step of a multi-stage run: its name, run directory (None for steps without one),
    estimated seconds and training epochs (None when it does not train)."""

    step: str
    estimate_s: float
    run_dir: str | None = None
    epochs: int | None = None


@dataclass
class Plan:
    name: str
    steps: list[PlanStep] = field(default_factory=list)

    def index_of(self, run_dir) -> int | None:
        want = _norm(run_dir)
        for i, s in enumerate(self.steps):
            if s.run_dir is not None and _norm(s.run_dir) == want:
                return i
        return None

    def total_s(self) -> float:
        return float(sum(s.estimate_s for s in self.steps))

    def seconds_after(self, i: int) -> float:
        return float(sum(s.estimate_s for s in self.steps[i + 1:]))


def _norm(p) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(str(p))))


def write_plan(path, name: str, steps: Sequence[PlanStep]) -> Path:
    """Write a plan file (atomically) for :data:`PLAN_ENV`; returns its path."""
    from .utils.io import atomic_write_json

    return atomic_write_json(Path(path), {"name": name, "steps": [s.__dict__ for s in steps]})


def load_plan(path=None) -> Plan | None:
    """The plan named by ``path`` or ``$SSRL_LAB_PLAN``; None when unset, missing or unreadable
    (logged)."""
    path = path or os.environ.get(PLAN_ENV)
    if not path:
        return None
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return Plan(str(d.get("name", "run")), [PlanStep(**s) for s in d["steps"]])
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("progress plan %s is unreadable (%s); no whole-run ETA", path, e)
        return None


# -- formatting ----------------------------------------------------------------------------------
def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _get(rec: Mapping[str, Any], dotted: str):
    cur: Any = rec
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def system_name(stage: str, config: Mapping[str, Any]) -> str:
    """The method a record's stage belongs to (``round2`` -> ``iterative``, or ``iterative_finetune``
    / ``iterative_stage1`` for those protocols; ``kmeans`` -> ``ssrl``)."""
    if stage in ("ssrl", "kmeans"):
        return "ssrl"
    if stage == "iterative" or (stage.startswith("round") and stage[5:].isdigit()):
        init = config.get("init") or "new"
        return "iterative" if init == "new" else f"iterative_{init}"
    if stage.startswith("supervised"):
        return "supervised"
    return stage or "run"


def record_fields(rec: Mapping[str, Any]) -> list[str]:
    """The measured values of one record, as ``name value`` strings (absent ones left out)."""
    out = []
    if _num(rec.get("loss")):
        out.append(f"loss {rec['loss']:.4g}")
    if _num(rec.get("train_acc")):
        out.append(f"acc {rec['train_acc']:.3f}")
    if _num(rec.get("n_clusters")):
        out.append(f"clusters {int(rec['n_clusters'])}")
    nmi = rec.get("nmi") if _num(rec.get("nmi")) else _get(rec, "pseudo_labels.nmi")
    if _num(nmi):
        out.append(f"NMI {nmi:.3f}")
    if _num(rec.get("frac_clean")):
        out.append(f"clean {rec['frac_clean']:.2f}")
    eer = _get(rec, "eval.eer")
    if _num(eer):
        allp = _get(rec, "eval.eer_all_pairs")
        out.append(f"EER {eer:.2f}" + (f" (all pairs {allp:.2f})" if _num(allp) else ""))
    return out


# -- trackers ------------------------------------------------------------------------------------
class StageTracker:
    """Progress of one run directory in this process: epochs seen, seconds per epoch, ETAs."""

    def __init__(self, run_path, config: Mapping[str, Any], plan: Plan | None, mode: str):
        self.path = Path(run_path)
        self.config = dict(config)
        self.plan = plan
        self.mode = mode
        self.t_begin = time.perf_counter()
        self.epoch_seconds: list[float] = []
        self.round_overhead: list[float] = []
        self.t_first_epoch: float | None = None
        self.bar = None
        self.lines: list[str] = []  # every line written (tests, the bar's history)

    # totals from the configuration
    @property
    def epochs(self) -> int | None:
        e = self.config.get("epochs")
        return int(e) if _num(e) else None

    @property
    def rounds(self) -> int | None:
        r = self.config.get("rounds")
        return int(r) if _num(r) else None

    def _epochs_total(self) -> int | None:
        if self.epochs is None:
            return None
        return self.epochs * (self.rounds or 1)

    def _epochs_left(self, rec: Mapping[str, Any]) -> int | None:
        e = rec.get("epoch")
        if self.epochs is None or not _num(e):
            return None
        left = max(self.epochs - int(e), 0)
        r = rec.get("round")
        if self.rounds and _num(r):
            left += max(self.rounds - int(r), 0) * self.epochs
        return left

    def stage_eta(self, rec: Mapping[str, Any]) -> float | None:
        spe = self.seconds_per_epoch()
        if spe is None:
            return None
        stage = str(rec.get("stage", ""))
        if stage == "iterative":  # a round just finished: the rounds ahead, each with its overhead
            r = rec.get("round")
            if not (self.rounds and _num(r) and self.epochs):
                return None
            ahead = max(self.rounds - int(r), 0)
            return ahead * (self.epochs * spe + self._overhead())
        left = self._epochs_left(rec)
        if left is None:
            return None
        eta = left * spe
        r = rec.get("round")
        if self.rounds and _num(r):  # this round's evaluation and the later rounds' embed/cluster/eval
            eta += (max(self.rounds - int(r), 0) + 1) * self._overhead()
        return eta

    def _overhead(self) -> float:
        if self.round_overhead:
            return sum(self.round_overhead) / len(self.round_overhead)
        return 0.0

    def seconds_per_epoch(self) -> float | None:
        if not self.epoch_seconds:
            return None
        recent = self.epoch_seconds[-5:]
        return sum(recent) / len(recent)

    def run_eta(self, stage_eta: float | None) -> float | None:
        """The stage's ETA plus the plan's later steps, scaled by this stage's speed against its estimate."""
        if self.plan is None or stage_eta is None:
            return None
        i = self.plan.index_of(self.path)
        if i is None:
            return None
        step = self.plan.steps[i]
        scale = 1.0
        spe = self.seconds_per_epoch()
        total = self._epochs_total()
        if spe is not None and total and step.estimate_s > 0:
            scale = min(max(spe * total / step.estimate_s, 0.2), 5.0)
        return stage_eta + scale * self.plan.seconds_after(i)

    def update(self, rec: Mapping[str, Any]) -> str:
        """Account for one record and return its progress line."""
        now = time.perf_counter()
        stage = str(rec.get("stage", ""))
        is_epoch = stage not in _NON_EPOCH_STAGES and _num(rec.get("epoch")) and int(rec["epoch"]) > 0
        if is_epoch:
            sec = rec.get("seconds")
            self.epoch_seconds.append(float(sec) if _num(sec) else now - (self.t_first_epoch or self.t_begin))
            if self.t_first_epoch is None:
                self.t_first_epoch = now
        if stage == "iterative" and _num(rec.get("seconds")) and _num(rec.get("seconds_train")):
            self.round_overhead.append(max(float(rec["seconds"]) - float(rec["seconds_train"]), 0.0))
        system = system_name(stage, self.config)
        head = system if self.path.name == system else f"{system} ({self.path.name})"
        parts = [PREFIX, head]
        r = rec.get("round")
        if _num(r) and self.rounds:
            parts.append(f"round {int(r)}/{self.rounds}")
        if stage == "kmeans":
            parts.append(f"k-means labels (k {rec.get('k', '?')})")
        elif stage == "iterative":
            parts.append("round done")
        elif stage in ("random", "supervised-eval"):
            parts.append("evaluated")
        elif _num(rec.get("epoch")):
            parts.append(f"epoch {int(rec['epoch'])}/{self.epochs if self.epochs else '?'}")
        parts += record_fields(rec)
        if is_epoch and self.epoch_seconds:
            parts.append(f"{self.epoch_seconds[-1]:.1f} s/epoch")
        elif _num(rec.get("seconds")):
            parts.append(f"{float(rec['seconds']):.1f} s")
        s_eta = self.stage_eta(rec)
        r_eta = self.run_eta(s_eta)
        if s_eta is not None:
            eta = f"ETA {system} {fmt_duration(s_eta)}"
            if r_eta is not None:
                eta += f", run {fmt_duration(r_eta)}"
            parts.append(eta)
        line = " ".join(parts[:2]) + "  " + "  ".join(parts[2:])
        self.lines.append(line)
        self._emit(line, rec, is_epoch)
        return line

    def _emit(self, line: str, rec: Mapping[str, Any], is_epoch: bool) -> None:
        if self.mode == "off":
            return
        if self.mode == "bar":
            if self.bar is None:
                self.bar = make_bar(self.path.name, self._epochs_total())
            if is_epoch:
                self.bar.update(1)
            self.bar.set_postfix_str("  ".join(record_fields(rec)), refresh=True)
            print(line, file=sys.stdout, flush=True)
            return
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def make_bar(desc: str, total: int | None):
    """A ``tqdm.auto`` bar over epochs (a widget in JupyterLab)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=True, dynamic_ncols=True)


def in_jupyter_frontend() -> bool:
    """True inside an IPython kernel that a Jupyter server started (so widgets render)."""
    if "JPY_SESSION_NAME" not in os.environ or "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    return ip is not None and hasattr(ip, "kernel")


def mode() -> str:
    """The effective output mode: ``lines``, ``bar`` or ``off`` (see the module docstring)."""
    m = os.environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
    if m not in MODES:
        log.warning("%s=%r is not one of %s; using auto", PROGRESS_ENV, m, ", ".join(MODES))
        m = "auto"
    if m == "auto":
        m = "bar" if in_jupyter_frontend() else "lines"
    return m


_trackers: dict[str, StageTracker] = {}
_failed = False


def begin(run_path, config: Mapping[str, Any], finished: bool = False, announce: bool = True) -> StageTracker | None:
    """Start tracking a run directory (called when a RunDir opens); in ``lines`` mode says so
    (``finished``: the directory already holds results, which a resumed trainer reuses)."""
    global _failed
    try:
        old = _trackers.pop(_norm(run_path), None)
        if old is not None:
            old.close()
        tr = StageTracker(run_path, config, load_plan(), mode())
        _trackers[_norm(run_path)] = tr
        if announce and tr.mode == "lines":
            what = "holds results" if finished else (
                f"{tr.epochs} epochs" + (f" x {tr.rounds} rounds" if tr.rounds else "") if tr.epochs else "started")
            print(f"{PREFIX} {Path(run_path).name}  {what}  ({run_path})", file=sys.stderr, flush=True)
        return tr
    except Exception as e:  # never let reporting stop training
        if not _failed:
            log.warning("progress reporting disabled: %s", e)
            _failed = True
        return None


def report(run_path, config: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """Report one metrics record of the run in ``run_path``; returns the line (None when off)."""
    global _failed
    try:
        tr = _trackers.get(_norm(run_path)) or begin(run_path, config, announce=False)
        if tr is None:
            return None
        line = tr.update(record)
        stage = str(record.get("stage", ""))
        last = (tr.epochs is not None and _num(record.get("epoch")) and int(record["epoch"]) >= tr.epochs
                and (not tr.rounds or (_num(record.get("round")) and int(record["round"]) >= tr.rounds))
                and stage not in ("kmeans",))
        if last:
            tr.close()
        return line
    except Exception as e:
        if not _failed:
            log.warning("progress reporting disabled: %s", e)
            _failed = True
        return None


def tracker(run_path) -> StageTracker | None:
    """The tracker of a run directory in this process (tests)."""
    return _trackers.get(_norm(run_path))
