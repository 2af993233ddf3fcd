"""The supervised upper bound: the classifier trained on the TRUE speaker labels of the training
table (same code as the iterative baseline's rounds), evaluated the same way; system "supervised".

``python -m ssrl_lab.train.supervised --profile demo --corpus data/synthvox-demo --run-dir outputs/supervised``
"""
from __future__ import annotations

import dataclasses
import logging

from ..config import ConfigError
from ..data.augment import DEMO_AUG
from . import distributed as dist
from . import harness
from .classifier import ClassifierConfig, ClassifierModel, fit, new_backbone
from .devices import seed_everything
from .results import eval_summary, evaluate_final, result_fields
from .run import RunDir

log = logging.getLogger("ssrl_lab.train.supervised")


@dataclasses.dataclass
class SupervisedConfig(ClassifierConfig):
    """Classifier training on the true labels (see :class:`ClassifierConfig`)."""



PROFILES: dict[str, dict] = {
    "smoke": dict(encoder_preset="micro", crop_s=1.0, batch_size=8, epochs=2, max_steps_per_epoch=3, augment=None,
                  amp="off", eval_batch_size=16, eval_max_len_s=1.5),
    "demo": dict(encoder_preset="tiny", crop_s=2.0, batch_size=64, epochs=8, optimizer="adam", lr=2e-3, min_lr=1e-5,
                 warmup_epochs=1.0, weight_decay=5e-5, augment=dict(DEMO_AUG), preload=True, eval_every=0,
                 eval_batch_size=32, eval_bucket_s=0.5),
    "vox": dict(encoder_preset="ssrl_paper", crop_s=2.0, batch_size=256, epochs=80, optimizer="adam", lr=1e-3,
                min_lr=1e-5, warmup_epochs=2.0, weight_decay=5e-5, augment={}, num_workers=8, eval_batch_size=1,
                eval_every=10),
}
SupervisedConfig.PROFILES = PROFILES


def train(cfg: SupervisedConfig, *, resume: bool = False, progress: bool = True,
          stop_after_epoch: int | None = None) -> dict | None:
    """Train on the true labels; returns the results (also results.json). The run is
    :func:`ssrl_lab.train.harness.run` of :func:`fit_true_labels`."""
    return harness.run(cfg, fit_true_labels, resume=resume, progress=progress, stop=stop_after_epoch)


def fit_true_labels(cfg: SupervisedConfig, corpus, run: RunDir, device, *, resume: bool, progress: bool,
                    stop: int | None) -> dict | None:
    """The supervised job: the classifier on the true labels, then its evaluation (None when
    ``stop`` = ``stop_after_epoch`` stopped it)."""
    labels, names = corpus.train.speaker_codes()
    if (labels < 0).any():
        raise ConfigError(f"corpus {cfg.corpus}: {(labels < 0).sum()} training utterances have no speaker label; "
                          "the supervised bound needs them all")
    seed_everything(cfg.seed)  # the AAM head's initialisation draws from the global generator
    model = ClassifierModel(new_backbone(cfg, cfg.seed), len(names), cfg.aam_scale, cfg.aam_margin)
    seed_everything(cfg.seed + 1000 * dist.rank())
    out = fit(cfg, run, model, corpus.train, labels, device, stage="supervised", progress=progress,
              stop_after_epoch=stop, resume=resume, corpus=corpus)
    if out is None:
        return None
    backbone, info = out
    ev = evaluate_final(backbone, corpus, cfg, device, run, progress)
    run.log_metrics({"stage": "supervised-eval", "epoch": cfg.epochs, "eval": eval_summary(ev),
                     "seconds": ev["seconds"]})
    return {"system": "supervised", **result_fields(ev), "evaluated": info["evaluated"],
            "n_speakers": len(names), "seconds": info["train_seconds"] + ev["seconds"], "epochs": cfg.epochs}


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main("supervised", SupervisedConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
