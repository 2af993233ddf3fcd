"""A randomly initialised encoder evaluated as a system (the lower bound; system "random").

``python -m ssrl_lab.train.random_init --profile demo --corpus data/synthvox-demo --run-dir outputs/random``
"""
from __future__ import annotations

import dataclasses
import time

from . import harness
from .classifier import new_backbone
from .results import eval_summary, evaluate_final, result_fields
from .train_config import TrainConfig


@dataclasses.dataclass
class RandomInitConfig(TrainConfig):
    """Only the encoder, the seed and the evaluation settings matter."""



PROFILES: dict[str, dict] = {
    "smoke": dict(encoder_preset="micro", eval_batch_size=16, eval_max_len_s=1.5, augment=None, amp="off"),
    "demo": dict(encoder_preset="tiny", augment=None, eval_batch_size=32, eval_bucket_s=0.5),
    "vox": dict(encoder_preset="ssrl_paper", augment=None, eval_batch_size=1),
}
RandomInitConfig.PROFILES = PROFILES


def train(cfg: RandomInitConfig, *, resume: bool = False, progress: bool = True) -> dict:
    """Evaluate a randomly initialised SpeakerNet; writes results.json, scores.npz, metrics.jsonl.
    The run is :func:`ssrl_lab.train.harness.run` of :func:`evaluate_random` on the corpus as it is."""
    return harness.run(cfg, evaluate_random, resume=resume, progress=progress, training_corpus=False)


def evaluate_random(cfg: RandomInitConfig, corpus, run, device, *, resume: bool, progress: bool, stop=None) -> dict:
    """The random-init job: the evaluation of a fresh SpeakerNet (seed ``cfg.seed``)."""
    t0 = time.perf_counter()
    ev = evaluate_final(new_backbone(cfg, cfg.seed).to(device), corpus, cfg, device, run, progress)
    run.log_metrics({"stage": "random", "epoch": 0, "eval": eval_summary(ev), "seconds": ev["seconds"]})
    return {"system": "random", **result_fields(ev), "evaluated": "random init",
            "seconds": time.perf_counter() - t0, "epochs": 0}


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main("random_init", RandomInitConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
