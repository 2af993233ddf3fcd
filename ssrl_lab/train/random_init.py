"""A randomly initialised encoder evaluated as a system (the lower bound; system "random").

``python -m ssrl_lab.train.random_init --profile demo --corpus data/synthvox-demo --run-dir outputs/random``
"""
from __future__ import annotations

import dataclasses
import time

from ..config import check
from . import distributed as dist
from .classifier import new_backbone
from .context import TrainConfig, eval_summary, evaluate_model, resolve_device, result_fields, score_arrays
from .run import RunDir


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
    """Evaluate a randomly initialised SpeakerNet; writes results.json, scores.npz, metrics.jsonl."""
    from ..data.corpus import open_corpus

    check(bool(cfg.corpus), "RandomInitConfig.corpus is empty: give --corpus DIR")
    check(bool(cfg.run_dir), "RandomInitConfig.run_dir is empty: give --run-dir DIR")
    dist.init_distributed()
    device = resolve_device(cfg.device, cfg.cudnn_benchmark)
    run = RunDir(cfg.run_dir, cfg.to_dict(), resume=resume)
    if resume and run.read_results() is not None:
        return run.read_results()
    t0 = time.perf_counter()
    corpus = open_corpus(cfg.corpus)
    ev = evaluate_model(new_backbone(cfg, cfg.seed).to(device), corpus, cfg, device, progress=progress,
                        return_scores=True)
    run.log_metrics({"stage": "random", "epoch": 0, "eval": eval_summary(ev), "seconds": ev["seconds"]})
    run.write_scores(ev["scores"], ev["labels"], **score_arrays(ev))
    results = {"system": "random", **result_fields(ev), "evaluated": "random init",
               "seconds": time.perf_counter() - t0, "epochs": 0}
    run.write_results(results)
    dist.barrier()
    return results


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main("random_init", RandomInitConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
