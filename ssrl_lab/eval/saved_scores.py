"""A run's saved evaluation (``scores.npz``) read back for paired comparisons.

``scores.npz`` (written by the trainers through ``RunDir.write_scores``) holds the trial-list
``scores`` and ``labels`` of the evaluation a run kept and, since confidence intervals were
added, the test ``embeddings``, their ``speakers`` and the trials' ``trial_rows``. From those a
run is rescored on the trial list and on all test pairs exactly as :func:`ssrl_lab.eval.evaluate`
scored it, so two runs on one test set can share every bootstrap replicate
(:func:`compare_runs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .bootstrap import CI_REPS, TrialSpeakers, compare, seed_mean_ci

__all__ = ["SavedScores", "load_scores", "compare_runs", "mean_ci_runs", "ScoresError", "score_sets"]


class ScoresError(ValueError):
    """Saved scores that cannot be compared: missing arrays, or runs on different trials."""


@dataclass
class SavedScores:
    path: Path
    scores: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray | None
    speakers: np.ndarray | None
    trial_rows: np.ndarray | None

    def trial_list(self) -> tuple[np.ndarray, TrialSpeakers, bytes]:
        """``(scores, trial speakers, key)``; runs with equal keys were scored on the same trials."""
        if self.trial_rows is None or self.speakers is None or self.trial_rows.shape[1] != self.scores.size:
            raise ScoresError(f"{self.path} has no trial rows and speakers (written before confidence intervals "
                              "were recorded): rerun its evaluation to compare it")
        rows = self.trial_rows.astype(np.int64)
        tr = TrialSpeakers.from_rows(rows[0], rows[1], self.speakers, self.labels)
        return self.scores.astype(np.float64), tr, rows.tobytes()

    def all_pairs(self) -> tuple[np.ndarray, TrialSpeakers, bytes]:
        """All test pairs scored as :func:`~ssrl_lab.eval.evaluate.score_embeddings` scores them."""
        from .evaluate import usable_rows
        from .scoring import all_pairs

        if self.embeddings is None or self.speakers is None:
            raise ScoresError(f"{self.path} holds no test embeddings (written before confidence intervals were "
                              "recorded): rerun its evaluation to compare it on all pairs")
        _, safe, spk = usable_rows(self.embeddings, self.speakers)
        ps, pl, pi, pj = all_pairs(safe, spk, return_pairs=True)
        tr = TrialSpeakers.from_rows(pi, pj, spk, pl)
        return ps.astype(np.float64), tr, np.stack([pi, pj]).astype(np.int64).tobytes()


def load_scores(path) -> SavedScores:
    path = Path(path)
    if not path.exists():
        raise ScoresError(f"{path} does not exist")
    with np.load(path) as z:
        get = lambda k: np.asarray(z[k]) if k in z.files else None  # noqa: E731
        return SavedScores(path, get("scores"), get("labels"), get("embeddings"), get("speakers"), get("trial_rows"))


def score_sets(files: Sequence, on: str) -> tuple[list[np.ndarray], TrialSpeakers]:
    if on not in ("trials", "all_pairs"):
        raise ValueError(f"on must be 'trials' or 'all_pairs', got {on!r}")
    sets, key, trials = [], None, None
    for f in files:
        s = load_scores(f)
        scores, tr, k = s.trial_list() if on == "trials" else s.all_pairs()
        if key is None:
            key, trials = k, tr
        elif k != key:
            raise ScoresError(f"{f} was scored on other trials than {files[0]}: no paired comparison")
        sets.append(scores)
    return sets, trials


def mean_ci_runs(files: Sequence, on: str = "trials", metric: str = "eer", n_reps: int = CI_REPS,
                 seed: int = 0) -> list[float | None]:
    """The 95 % interval of the mean ``metric`` over the seeds of one system (one file per seed),
    speakers and seeds resampled (:func:`ssrl_lab.eval.bootstrap.seed_mean_ci`)."""
    sets, trials = score_sets(files, on)
    return seed_mean_ci(sets, trials, metric, n_reps=n_reps, seed=seed)


def compare_runs(files_a: Sequence, files_b: Sequence, on: str = "trials", n_reps: int = CI_REPS, seed: int = 0) -> dict:
    """"A better than B" (:func:`ssrl_lab.eval.bootstrap.compare`) from saved scores, one file per
    seed and system, on the trial list (``on="trials"``) or on all pairs (``"all_pairs"``).
    Raises :class:`ScoresError` when a file lacks what is needed or the runs were scored on
    different trials."""
    sets, trials = score_sets(list(files_a) + list(files_b), on)
    na = len(files_a)
    return compare(sets[:na], sets[na:], trials, n_reps=n_reps, seed=seed)
