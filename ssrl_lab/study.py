"""The compute-matched study: every stage-2 system from one DINO model, tuned on dev, over seeds.

``make study`` (``python -m ssrl_lab.study --profile demo --out outputs/study``) executes
``notebooks/06_study.ipynb`` with papermill through :func:`ssrl_lab.sweep.run_grid`; the
notebook calls :func:`run_study` and draws the table and the plot. Every run lives in its own
run directory and resumes, so a second ``make study`` only trains what is missing.

The plan (:class:`StudyConfig`):

1. **Stage 1**: one DINO run (``dino_run``, trained into ``<out>/dino`` when not given).
2. **Tuning on dev** (``<out>/tune/<system>/<setting>``): every stage-2 system gets the same
   budget of at most four settings (:data:`SETTINGS`), trained for the smallest budget with
   the first seed; the setting with the lowest **dev** EER (trial list) is kept. Test EER is
   never looked at when choosing.
3. **The study** (``<out>/runs/<system>/<budget>/seed<s>``): every system with its chosen
   setting, at every budget of stage-2 training epochs, over every seed. SSRL trains for E
   epochs; an iterative protocol for R rounds of E / R epochs (R = ``rounds[E]``). Rounds of
   equal length do not depend on how many follow, so an iterative run of R rounds also gives
   every shorter budget made of the same rounds (its ``results_round<r>.json``): the E = 12
   point (2 rounds of 6) is the second round of the E = 30 run (5 rounds of 6) of the same seed.

The systems: ``ssrl`` and the three iterative protocols ``iterative_new`` (Cai et al. 2021),
``iterative_finetune`` and ``iterative_stage1`` (loss-gated learning's public code); see
:mod:`ssrl_lab.train.iterative`. What is tuned: K relative to the number of training speakers
(the authors use 1.33x; the demo used 2.5x for SSRL and 1.5x for the iterative baseline before
this study) and, for SSRL, the teacher's EMA time constant as a share of the run (authors about
0.4-4 %, the earlier demo 11-28 %); for the iterative protocols the learning rate instead (they
have no teacher). The chosen settings are the demo profiles (README: the study's results).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import Config, check
from .utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger("ssrl_lab.study")

SYSTEMS = ("ssrl", "iterative_new", "iterative_finetune", "iterative_stage1")

#: At most four settings per system (the same tuning budget for every system).
#: ``k_ratio``: K / number of training speakers. SSRL's ``ema_share``: the teacher's EMA time
#: constant 1 / (1 - momentum) at the start and at the end, as a share of the run's steps.
SETTINGS: dict[str, list[dict]] = {
    "ssrl": [
        {"k_ratio": 1.33, "ema_share": [0.004, 0.04]},
        {"k_ratio": 1.33, "ema_share": [0.11, 0.28]},
        {"k_ratio": 2.5, "ema_share": [0.004, 0.04]},
        {"k_ratio": 2.5, "ema_share": [0.11, 0.28]},
    ],
    **{f"iterative_{init}": [
        {"k_ratio": 1.33, "lr": 2e-3},
        {"k_ratio": 1.33, "lr": 5e-4},
        {"k_ratio": 2.5, "lr": 2e-3},
        {"k_ratio": 2.5, "lr": 5e-4},
    ] for init in ("new", "finetune", "stage1")},
}


@dataclasses.dataclass
class StudyConfig(Config):
    """``profile`` (smoke | demo), ``corpus`` (with a dev split), ``out`` folder, ``dino_run``
    (None: ``<out>/dino``, trained when missing), ``systems``, ``budgets`` (stage-2 epochs),
    ``rounds`` (iterative rounds per budget, as ``"budget:rounds"`` strings), ``seeds``,
    ``tune`` (False: use each system's first setting), ``max_settings`` (tuning budget per system,
    at most 4), ``device``, ``overrides`` (extra config keys for every stage-2 run, e.g. the
    smoke profile's ``max_steps_per_epoch``), ``extra_points`` (more seeds for some systems at one
    budget, as ``"system:budget:seed"`` strings: the deciding pair's seeds 3-4; trained after every
    other point, counted at that budget only), ``archive_to`` (None, or a folder that
    :func:`archive` refreshes after every finished run, so a study stopped anywhere leaves its
    finished runs behind)."""

    profile: str = "demo"
    corpus: str = ""
    out: str = "outputs/study"
    dino_run: str | None = None
    systems: list[str] = dataclasses.field(default_factory=lambda: list(SYSTEMS))
    budgets: list[int] = dataclasses.field(default_factory=lambda: [12, 30])
    rounds: list[str] = dataclasses.field(default_factory=lambda: ["12:2", "30:5"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    tune: bool = True
    max_settings: int = 4
    device: str = "auto"
    overrides: dict = dataclasses.field(default_factory=dict)
    extra_points: list[str] = dataclasses.field(default_factory=list)
    archive_to: str | None = None

    def validate(self) -> None:
        check(self.profile in ("smoke", "demo", "vox"), f"profile must be smoke, demo or vox, got {self.profile!r}")
        bad = [s for s in self.systems if s not in SYSTEMS]
        check(not bad and self.systems, f"systems must be a non-empty subset of {SYSTEMS}, got {self.systems}")
        check(bool(self.budgets) and all(b >= 1 for b in self.budgets), f"budgets must be epochs >= 1, got {self.budgets}")
        check(bool(self.seeds), "seeds must not be empty")
        check(1 <= self.max_settings <= 4, f"max_settings must be in [1, 4] (the tuning budget), got {self.max_settings}")
        r = self.rounds_per_budget  # parses and checks
        for b in self.budgets:
            check(b in r, f"budget {b} has no rounds entry in {self.rounds} (give 'budget:rounds')")
            check(b % r[b] == 0, f"budget {b} is not a whole number of rounds of equal length ({r[b]} rounds)")
        for system, budget, seed in self.extra:
            check(system in self.systems, f"extra point {system}:{budget}:{seed}: {system} is not among {self.systems}")
            check(budget in self.budgets, f"extra point {system}:{budget}:{seed}: budget {budget} is not among "
                                          f"{self.budgets}")

    @property
    def extra(self) -> list[tuple[str, int, int]]:
        """``extra_points`` parsed: ``(system, budget, seed)``, seeds already in ``seeds`` left out."""
        from .config import ConfigError

        out = []
        for item in self.extra_points:
            try:
                system, budget, seed = str(item).split(":")
                point = (system, int(budget), int(seed))
            except ValueError:
                raise ConfigError(f"extra_points entries are 'system:budget:seed' strings, got {item!r}") from None
            if point[2] not in self.seeds and point not in out:
                out.append(point)
        return out

    @property
    def rounds_per_budget(self) -> dict[int, int]:
        out = {}
        for item in self.rounds:
            try:
                b, r = (int(v) for v in str(item).split(":"))
            except ValueError:
                from .config import ConfigError

                raise ConfigError(f"rounds entries are 'budget:rounds' strings, got {item!r}") from None
            check(r >= 1, f"rounds must be >= 1 in {item!r}")
            out[b] = r
        return out

    @property
    def out_dir(self) -> Path:
        from .notebook_params import resolve_path

        return resolve_path(self.out)

    @property
    def dino_dir(self) -> Path:
        from .notebook_params import resolve_path

        return resolve_path(self.dino_run) if self.dino_run else self.out_dir / "dino"


# -- configs of the runs -------------------------------------------------------------------
def n_train_speakers(corpus) -> int:
    codes = corpus.train.speaker_codes()[0]
    n = int(np.unique(codes[codes >= 0]).size)
    check(n > 0, "the study needs the number of training speakers (for K) and the corpus's train table has no "
                 "speaker labels; give k directly")
    return n


def setting_name(setting: dict) -> str:
    parts = []
    for key, v in setting.items():
        v = "-".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else f"{v:g}"
        parts.append(f"{key}={v}")
    return ",".join(parts)


def ema_from_share(share: Sequence[float], steps: int) -> tuple[float, float]:
    """EMA momenta whose time constants ``1 / (1 - m)`` are ``share`` of ``steps`` (at least 1 step)."""
    return tuple(1.0 - 1.0 / max(1.0, s * steps) for s in share)  # type: ignore[return-value]


def run_config(study: StudyConfig, system: str, setting: dict, epochs: int, seed: int, run_dir: Path,
               n_speakers: int, steps_per_epoch: int):
    """The trainer config of one run: the profile, the setting, the budget and the seed."""
    k = max(2, int(round(setting["k_ratio"] * n_speakers)))
    common = dict(corpus=study.corpus, run_dir=str(run_dir), dino_run=str(study.dino_dir), seed=seed,
                  device=study.device, k=k, **study.overrides)
    if system == "ssrl":
        from .train.ssrl import SSRLConfig

        ema_start, ema_end = ema_from_share(setting["ema_share"], epochs * steps_per_epoch)
        base = SSRLConfig.profile(study.profile)
        eval_every = base.eval_every if base.eval_every and epochs % base.eval_every == 0 else 0
        # no explorer snapshots (05_explore's teacher maps): they cost an embedding of the training set
        # per evaluation and change no result (tests/test_snapshots.py)
        snap = {"snapshots": {"enabled": False}} if "snapshots" not in common else {}
        return SSRLConfig.profile(study.profile, epochs=epochs, ema_start=ema_start, ema_end=ema_end,
                                  eval_every=eval_every, **snap, **common)
    from .train.iterative import IterativeConfig

    rounds = study.rounds_per_budget[epochs]
    return IterativeConfig.profile(study.profile, init=system.split("_", 1)[1], rounds=rounds, epochs=epochs // rounds,
                                   lr=setting["lr"], **common)


def _train(system: str, cfg) -> dict:
    if system == "ssrl":
        from .train.ssrl import train
    else:
        from .train.iterative import train
    return train(cfg, resume=True, progress=False)


def read_json(path) -> dict:
    import json

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: its run has not finished")
    return json.loads(path.read_text())


def _steps_per_epoch(study: StudyConfig, corpus) -> int:
    from .train.loader import steps_per_epoch
    from .train.ssrl import SSRLConfig

    base = SSRLConfig.profile(study.profile, **{k: v for k, v in study.overrides.items()
                                                 if k in ("batch_size", "max_steps_per_epoch")})
    spe = steps_per_epoch(len(corpus.train), base.batch_size)
    return min(spe, base.max_steps_per_epoch) if base.max_steps_per_epoch else spe


# -- the phases ----------------------------------------------------------------------------
def ensure_dino(study: StudyConfig) -> Path:
    """The stage-1 model: the given run (must be finished) or ``<out>/dino`` trained now."""
    d = study.dino_dir
    if (d / "results.json").exists():
        return d
    check(study.dino_run is None, f"dino_run {d} holds no results.json: finish that DINO run first")
    from .train.dino import DINOConfig, train

    log.info("study: training the stage-1 DINO model into %s", d)
    train(DINOConfig.profile(study.profile, corpus=study.corpus, run_dir=str(d), device=study.device,
                             **{k: v for k, v in study.overrides.items() if k in ("max_steps_per_epoch", "tracking")}),
          resume=True, progress=False)
    return d


def tune(study: StudyConfig, corpus) -> dict[str, dict]:
    """Train every setting of every system at the smallest budget (first seed) and keep the one
    with the lowest dev EER. Returns ``{system: {"chosen": setting, "tried": [...]}}`` (also
    ``<out>/tune/choice.json``)."""
    check(getattr(corpus, "dev", None) is not None,
          "tuning needs a dev split (corpus.json 'dev' and 'dev_trials'): settings are never chosen on test speakers")
    n_spk, spe = n_train_speakers(corpus), _steps_per_epoch(study, corpus)
    budget, seed = min(study.budgets), study.seeds[0]
    out: dict[str, dict] = {}
    for system in study.systems:
        tried = []
        for setting in SETTINGS[system][: study.max_settings]:
            run_dir = study.out_dir / "tune" / system / setting_name(setting)
            t0 = time.perf_counter()
            res = _train(system, run_config(study, system, setting, budget, seed, run_dir, n_spk, spe))
            if system != "ssrl":  # the budget's round (a shorter prefix of a longer run would be a different budget)
                res = read_json(run_dir / f"results_round{study.rounds_per_budget[budget]}.json")
            tried.append({"setting": setting, "name": setting_name(setting), "run_dir": str(run_dir),
                          "dev_eer": res.get("dev_eer"), "dev_eer_all_pairs": res.get("dev_eer_all_pairs"),
                          "seconds": res.get("seconds", time.perf_counter() - t0)})
            log.info("tune %s %s: dev EER %s", system, setting_name(setting), res.get("dev_eer"))
            _archive_as_we_go(study)
        scored = [t for t in tried if t["dev_eer"] is not None and math.isfinite(t["dev_eer"])]
        check(bool(scored), f"tuning {system}: no run reported a dev EER")
        best = min(scored, key=lambda t: t["dev_eer"])  # first of equal ones: the list's order
        out[system] = {"chosen": best["setting"], "chosen_name": best["name"], "tried": tried,
                       "budget": budget, "seed": seed}
    atomic_write_json(study.out_dir / "tune" / "choice.json", out)
    return out


def study_points(study: StudyConfig, choice: dict[str, dict]) -> list[dict]:
    """One record per (system, budget, seed): where its results are and what trains them."""
    rounds = study.rounds_per_budget
    pts = []
    for system in study.systems:
        setting = choice[system]["chosen"]
        for seed in study.seeds:
            if system == "ssrl":
                for b in study.budgets:
                    d = study.out_dir / "runs" / system / f"E{b}" / f"seed{seed}"
                    pts.append({"system": system, "budget": b, "seed": seed, "run_dir": d, "train_budget": b,
                                "results": d / "results.json"})
            else:
                # one run per seed: the longest budget; shorter budgets of equal-length rounds are its prefixes
                length = {b: b // rounds[b] for b in study.budgets}
                for b in study.budgets:
                    longest = max((c for c in study.budgets if length[c] == length[b]), key=lambda c: rounds[c])
                    d = study.out_dir / "runs" / system / f"E{longest}" / f"seed{seed}"
                    pts.append({"system": system, "budget": b, "seed": seed, "run_dir": d, "train_budget": longest,
                                "results": d / f"results_round{rounds[b]}.json"})
        for p in pts:
            p.setdefault("setting", setting)
    for system, b, seed in study.extra:
        longest = b if system == "ssrl" else max(
            (c for c in study.budgets if c // rounds[c] == b // rounds[b]), key=lambda c: rounds[c])
        d = study.out_dir / "runs" / system / f"E{longest}" / f"seed{seed}"
        pts.append({"system": system, "budget": b, "seed": seed, "run_dir": d, "train_budget": longest,
                    "results": d / ("results.json" if system == "ssrl" else f"results_round{rounds[b]}.json"),
                    "setting": choice[system]["chosen"], "extra": True})
    return pts


def run_study(study: StudyConfig) -> dict:
    """All phases (each resumes); returns ``{"choice", "points", "table"}`` and writes
    ``<out>/study.json``."""
    from .data.corpus import open_corpus

    corpus = open_corpus(study.corpus)
    ensure_dino(study)
    choice = tune(study, corpus) if study.tune else {
        s: {"chosen": SETTINGS[s][0], "chosen_name": setting_name(SETTINGS[s][0]), "tried": []} for s in study.systems}
    n_spk, spe = n_train_speakers(corpus), _steps_per_epoch(study, corpus)
    points = study_points(study, choice)
    done = set()
    for p in sorted(points, key=lambda p: (p.get("extra", False), p["seed"], p["system"], p["train_budget"])):
        key = (p["system"], p["train_budget"], p["seed"])
        if key not in done:
            _train(p["system"], run_config(study, p["system"], p["setting"], p["train_budget"], p["seed"],
                                           p["run_dir"], n_spk, spe))
            done.add(key)
            _archive_as_we_go(study)
    summary = summarize(study, choice, points)
    atomic_write_json(study.out_dir / "study.json", summary)
    atomic_write_text(study.out_dir / "study.md", study_markdown(summary))
    return summary


def summarize(study: StudyConfig, choice: dict[str, dict], points: list[dict]) -> dict:
    """``{"choice", "points", "table", "power", "power_more", "claims", "config"}`` from finished
    ``points`` (every one must hold its results): the table, the deciding pair's power (SSRL against
    the strongest protocol by dev EER), the power of SSRL against each other iterative protocol the
    design gave extra seeds (``power_more``), and the claims."""
    rows = [point_row(p) for p in points]
    from .study_power import WHY_DESIGN, study_power

    table = study_table(rows)
    try:
        rival = "iterative_" + strongest_protocol({"table": table})
    except ValueError:
        rival = None
    by_design = [s for s in dict.fromkeys(system for system, _, _ in study.extra)
                 if s.startswith("iterative_") and s != rival]
    summary = {"choice": choice, "points": [{**r} for r in rows], "table": table,
               "power": study_power(rows, rival, study.budgets),
               "power_more": [study_power(rows, s, study.budgets, why=WHY_DESIGN) for s in by_design],
               "claims": study_claims(rows, study), "config": study.to_dict()}
    return summary


def _archive_as_we_go(study: StudyConfig) -> None:
    if study.archive_to:
        from .notebook_params import resolve_path

        archive(study, resolve_path(study.archive_to))


def study_markdown(summary: dict) -> str:
    from .study_power import power_markdown, powers

    return ("# Study\n\n## Tuning on dev\n\n" + tuning_markdown(summary["choice"])
            + "\n\n## Mean ± std over seeds\n\n" + table_markdown(summary["table"])
            + "\n\n## Power: the smallest difference the study can resolve\n\n"
            + "\n\n".join(power_markdown(p) for p in powers(summary) or [None])
            + "\n\n## Claims\n\n" + claims_markdown(summary.get("claims", [])) + "\n")


# -- carrying a study across machines --------------------------------------------------------
#: the files of a finished run that the study needs to count it as done (and to plot it)
RUN_FILES = ("config.json", "metrics.jsonl", "results.json")


def _copy_atomic(src: Path, dst: Path) -> None:
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def archive_files(study: StudyConfig) -> list[Path]:
    """The files (relative to ``study.out_dir``) that let another machine resume the study without
    retraining what is finished: the DINO run with its checkpoint (every stage-2 run starts from
    it), every finished tuning run's results, every finished study run's results and the scores
    its points are judged on (of an iterative run, the scores of the rounds that are budgets of
    the study only: on a 4,000-utterance test set each file is about 3 MB), and the study's own
    outputs (study.json, study.md, the plots as HTML and PNG). Checkpoints of stage-2 runs, snapshots
    and caches stay behind: an unfinished run restarts."""
    out = study.out_dir
    rel: list[Path] = []
    kept_rounds = set(study.rounds_per_budget.values())
    d = study.dino_dir
    if (d / "results.json").exists() and study.dino_run is None:
        rel += [Path("dino") / f for f in (*RUN_FILES, "checkpoint.pt", "scores.npz")]
    for res in sorted(out.glob("tune/*/*/results.json")):
        rel += [res.parent.relative_to(out) / f for f in RUN_FILES]
        rel += [p.relative_to(out) for p in res.parent.glob("results_round*.json")]
    for res in sorted(out.glob("runs/*/*/*/results.json")):
        rel += [res.parent.relative_to(out) / f for f in RUN_FILES]
        for p in res.parent.glob("results_round*.json"):  # the scores of the rounds that are study points
            rel += [p.relative_to(out)] + ([scores_file(p).relative_to(out)] if _round_of(p) in kept_rounds else [])
        if not list(res.parent.glob("results_round*.json")):
            rel.append(res.parent.relative_to(out) / "scores.npz")
    rel += [p.relative_to(out) for p in (out / "tune" / "choice.json", out / "study.json", out / "study.md")]
    rel += [p.relative_to(out) for p in sorted((out / "plots").glob("*.html")) + sorted((out / "plots").glob("*.png"))]
    return [r for r in dict.fromkeys(rel) if (out / r).exists()]


def _round_of(results_path: Path) -> int:
    return int(results_path.stem.removeprefix("results_round"))


def archive(study: StudyConfig, dest) -> int:
    """Copy :func:`archive_files` into ``dest`` (atomically, file by file); returns how many were
    new or changed."""
    dest, n = Path(dest), 0
    for r in archive_files(study):
        src, dst = study.out_dir / r, dest / r
        if not dst.exists() or dst.stat().st_size != src.stat().st_size or dst.read_bytes() != src.read_bytes():
            _copy_atomic(src, dst)
            n += 1
    log.info("study: archived %d file(s) into %s", n, dest)
    return n


def restore(study: StudyConfig, src) -> int:
    """Copy what an :func:`archive` holds into ``study.out_dir`` where it is missing (nothing there
    is overwritten); returns how many files were copied."""
    src, n = Path(src), 0
    if not src.is_dir():
        return 0
    for p in sorted(src.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            dst = study.out_dir / p.relative_to(src)
            if not dst.exists():
                _copy_atomic(p, dst)
                n += 1
    log.info("study: restored %d file(s) from %s", n, src)
    return n


# -- reading the results -------------------------------------------------------------------
def scores_file(results_path) -> Path:
    """The ``scores*.npz`` beside a ``results*.json`` (``results_round2.json`` -> ``scores_round2.npz``)."""
    p = Path(results_path)
    return p.with_name(p.name.replace("results", "scores", 1).replace(".json", ".npz"))


def point_row(p: dict) -> dict:
    res = read_json(p["results"])
    return {"system": p["system"], "budget": p["budget"], "seed": p["seed"], "run_dir": str(p["run_dir"]),
            "setting": setting_name(p["setting"]), "eer": res.get("eer"), "eer_all_pairs": res.get("eer_all_pairs"),
            "eer_ci": res.get("eer_ci"), "eer_all_pairs_ci": res.get("eer_all_pairs_ci"),
            "scores_file": str(scores_file(p["results"])),
            "mindcf_0.01": res.get("mindcf_0.01"), "mindcf_0.05": res.get("mindcf_0.05"),
            "dev_eer": res.get("dev_eer"), "dev_eer_all_pairs": res.get("dev_eer_all_pairs"),
            "seconds": res.get("seconds"), "epochs": res.get("epochs"), "evaluated": res.get("evaluated"),
            "results": str(p["results"])}


def _mean_std(v: list) -> tuple[float | None, float | None]:
    v = [float(x) for x in v if x is not None and math.isfinite(float(x))]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _interval_or_none(files: list[str], on: str, n_reps: int) -> list | None:
    from .eval.saved_scores import ScoresError, mean_ci_runs

    try:
        return mean_ci_runs(files, on=on, n_reps=n_reps)
    except (ScoresError, ValueError) as e:
        log.warning("no interval for %s: %s", files[0] if files else "?", e)
        return None


def study_table(rows: list[dict], n_reps: int | None = None) -> list[dict]:
    """Mean and standard deviation over seeds per (system, budget), and the 95 % interval of the
    mean test EER (trial list and all pairs; a bootstrap over test speakers and seeds)."""
    from .eval.bootstrap import CI_REPS

    keys = ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05", "dev_eer", "seconds")
    out = []
    for system in dict.fromkeys(r["system"] for r in rows):
        for budget in sorted({r["budget"] for r in rows if r["system"] == system}):
            grp = [r for r in rows if r["system"] == system and r["budget"] == budget]
            rec = {"system": system, "budget": budget, "n_seeds": len(grp), "setting": grp[0]["setting"]}
            for key in keys:
                rec[f"{key}_mean"], rec[f"{key}_std"] = _mean_std([r[key] for r in grp])
            files = [r["scores_file"] for r in grp]
            rec["eer_ci"] = _interval_or_none(files, "trials", n_reps or CI_REPS)
            rec["eer_all_pairs_ci"] = _interval_or_none(files, "all_pairs", n_reps or CI_REPS)
            out.append(rec)
    return out


def study_claims(rows: list[dict], study: StudyConfig, n_reps: int | None = None) -> list[dict]:
    """"SSRL better than X" for every iterative protocol X: at every budget (equal stage-2
    epochs), and SSRL at the smallest budget against X at the largest (the paper's "one SSRL
    round beats five iterative rounds"). Each on the trial list and on all pairs, from the
    paired bootstrap over test speakers and seeds (:func:`ssrl_lab.eval.saved_scores.compare_runs`)."""
    from .eval.bootstrap import CI_REPS
    from .eval.saved_scores import ScoresError, compare_runs

    files = {}
    for r in rows:
        files.setdefault((r["system"], r["budget"]), []).append(r["scores_file"])
    lo, hi = min(study.budgets), max(study.budgets)
    rounds = study.rounds_per_budget
    pairs = []
    for x in (s for s in study.systems if s != "ssrl"):
        for b in sorted(study.budgets):
            pairs.append((f"SSRL better than {x} at E = {b}", ("ssrl", b), (x, b)))
        if lo != hi:
            pairs.append((f"SSRL at E = {lo} better than {x} at E = {hi} ({rounds[hi]} rounds)", ("ssrl", lo), (x, hi)))
    out = []
    for claim, a, b in pairs:
        rec: dict[str, Any] = {"claim": claim, "a": list(a), "b": list(b)}
        for on, sfx in (("trials", ""), ("all_pairs", "_all_pairs")):
            rec[f"outcome{sfx}"] = rec[f"diff{sfx}"] = rec[f"diff_ci{sfx}"] = None
            if a not in files or b not in files:
                lack = a if a not in files else b
                rec[f"reason{sfx}"] = f"no finished run of {lack[0]} at E = {lack[1]}"
                continue
            try:
                c = compare_runs(files[a], files[b], on=on, n_reps=n_reps or CI_REPS)
            except (ScoresError, ValueError) as e:
                rec[f"reason{sfx}"] = str(e)
                continue
            rec.update({f"outcome{sfx}": c["outcome"], f"diff{sfx}": c["diff"], f"diff_ci{sfx}": c["ci"],
                        "n_seeds": c["n_seeds"]})
        out.append(rec)
    return out


def strongest_protocol(summary: dict, budget: int | None = None, among=("finetune", "stage1")) -> str:
    """The iterative protocol (``init``) with the lowest mean **dev** EER (trial list) over seeds at
    ``budget`` (default: the study's smallest) in a study summary (``study.json``): the one the demo
    runs beside the paper's ``new``. Test EER plays no part."""
    table = summary.get("table") or []
    if budget is None:
        budget = min((r["budget"] for r in table), default=None)
    cand = {init: r["dev_eer_mean"] for r in table if r["budget"] == budget and r.get("dev_eer_mean") is not None
            and (init := r["system"].removeprefix("iterative_")) in among}
    if not cand:
        raise ValueError(f"the study summary has no dev EER for any of {among} at budget {budget}")
    return min(cand, key=cand.get)


def main(argv: Sequence[str] | None = None) -> int:
    from .notebook_params import resolve_path

    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.study", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="demo", choices=("smoke", "demo"))
    ap.add_argument("--corpus", default=None, help="corpus folder (default: the profile's SynthVox corpus)")
    ap.add_argument("--out", default="outputs/study")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="another 06_study parameter (e.g. -p seeds '[0,1]')")
    ap.add_argument("--restore-from", default=None, metavar="DIR",
                    help="first copy what this archive holds into --out where missing (a study begun elsewhere)")
    ap.add_argument("--archive-to", default=None, metavar="DIR",
                    help="afterwards (also after a failure or SIGTERM) copy what lets another machine resume")
    ap.add_argument("--archive-only", action="store_true", help="only archive --out into --archive-to; train nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    where = StudyConfig(out=str(resolve_path(args.out)))
    if args.archive_only:
        if not args.archive_to:
            ap.error("--archive-only needs --archive-to")
        print(f"study: {archive(where, resolve_path(args.archive_to))} file(s) archived into {args.archive_to}")
        return 0
    if args.restore_from:
        print(f"study: {restore(where, resolve_path(args.restore_from))} file(s) restored from {args.restore_from}")
    if not args.archive_to:
        return _run(args)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the archive below still runs
    try:
        return _run(args)
    finally:
        print(f"study: {archive(where, resolve_path(args.archive_to))} file(s) archived into {args.archive_to}")


def _run(args) -> int:
    from . import sweep
    from .notebook_params import repo_root, resolve_path

    nb = repo_root() / "notebooks" / "06_study.ipynb"
    params = sweep.notebook_params(nb)
    specs = ([("profile", args.profile)] + ([("corpus", args.corpus)] if args.corpus else [])
             + ([("archive_to", str(resolve_path(args.archive_to)))] if args.archive_to else [])
             + [tuple(p) for p in args.param])
    try:
        grid = sweep.build_grid(nb, specs, out_root=str(resolve_path(args.out).parent))
    except sweep.SweepError as e:
        print(f"study refused: {e}", file=sys.stderr)
        return 2
    assert "run_dir" in params
    point = sweep.GridPoint("study", grid[0].params, resolve_path(args.out))
    recs = sweep.run_grid(nb, [point], args.kernel, keep_going=False, tracking_parent=point.run_dir)
    ok = recs and recs[0]["status"] == "ok"
    print(f"study {'done' if ok else 'FAILED'}: {point.run_dir} ({recs[0].get('seconds', 0):.0f} s)"
          + ("" if ok else f": {recs[0].get('error')}"))
    return 0 if ok else 1


# -- tables --------------------------------------------------------------------------------
def _f(v, fmt=".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def tuning_markdown(choice: dict[str, dict]) -> str:
    """Every setting tried per system with its dev EER; the chosen one in bold."""
    lines = ["| system | setting | dev EER % (trial list / all pairs) | chosen |", "| --- | --- | --- | --- |"]
    for system, c in choice.items():
        for t in c.get("tried", []):
            mark = "**yes**" if t["name"] == c["chosen_name"] else ""
            lines.append(f"| {system} | {t['name']} | {_f(t['dev_eer'])} / {_f(t['dev_eer_all_pairs'])} | {mark} |")
        if not c.get("tried"):
            lines.append(f"| {system} | {c['chosen_name']} | not tuned | **yes** |")
    return "\n".join(lines)


def _ci(v) -> str:
    return f" [{v[0]:.2f}, {v[1]:.2f}]" if isinstance(v, (list, tuple)) and None not in v else ""


def table_markdown(table: list[dict]) -> str:
    """The study table: mean ± std over seeds per system and budget, with the 95 % interval of
    the mean (speakers and seeds resampled) in brackets."""
    pm = lambda r, k, fmt=".2f": f"{_f(r[f'{k}_mean'], fmt)} ± {_f(r[f'{k}_std'], fmt)}"  # noqa: E731
    lines = ["| system | stage-2 epochs | seeds | setting (chosen on dev) | dev EER % | test EER % (trial list) "
             "| test EER % (all pairs) | minDCF 0.01 | minDCF 0.05 | wall s |",
             "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | ---: |"]
    for r in table:
        lines.append(f"| {r['system']} | {r['budget']} | {r['n_seeds']} | {r['setting']} | {pm(r, 'dev_eer')} | "
                     f"{pm(r, 'eer')}{_ci(r.get('eer_ci'))} | {pm(r, 'eer_all_pairs')}{_ci(r.get('eer_all_pairs_ci'))} | "
                     f"{pm(r, 'mindcf_0.01', '.3f')} | {pm(r, 'mindcf_0.05', '.3f')} | {_f(r['seconds_mean'], '.0f')} |")
    return "\n".join(lines)


def claims_markdown(claims: list[dict]) -> str:
    """Each claim's EER difference (A - B, points) with its 95 % interval and its outcome."""
    def cell(c, sfx):
        if c.get(f"outcome{sfx}") is None:
            return f"n/a ({c.get(f'reason{sfx}', '')})"
        return f"**{c[f'outcome{sfx}']}** ({c[f'diff{sfx}']:+.2f}{_ci(c[f'diff_ci{sfx}'])})"

    lines = ["EER(SSRL) - EER(X) in points, 95 % interval from a paired bootstrap over test speakers and seeds; "
             "**better** / **worse** when it excludes 0, else **not separable**.", "",
             "| claim | trial list | all pairs |", "| --- | --- | --- |"]
    lines += [f"| {c['claim']} | {cell(c, '')} | {cell(c, '_all_pairs')} |" for c in claims]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
