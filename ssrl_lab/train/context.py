"""What every trainer shares: device, mixed precision, seeds, RNG state, sharded loaders, progress.

* :func:`resolve_device` - ``"auto"`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
* :func:`autocast` - bf16 autocast on CUDA (``amp="auto"|"bf16"``), a no-op otherwise.
* :func:`seed_everything`, :func:`rng_state`, :func:`set_rng_state` - python / numpy / torch
  (and CUDA) generators, saved in checkpoints so a resumed run continues identically.
* :class:`ShardedSampler` - DistributedSampler-style: a per-epoch permutation seeded by
  ``(seed, epoch)``, padded to a multiple of the world size, rank ``r`` takes every
  ``world``-th index. With one process it is a seeded shuffle.
* :func:`make_loader` - a DataLoader for one epoch (``dataset.set_epoch`` and
  ``sampler.set_epoch`` called), batches collated by :func:`collate`.
* :func:`progress` - tqdm on the main process when ``enabled``, a plain iterator otherwise.
* :class:`StepTimer` - wall clock that synchronises CUDA first (times device work).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ..config import Config, check
from ..models.config import EncoderConfig
from . import distributed as dist

log = logging.getLogger("ssrl_lab.train.context")


def resolve_device(spec: str = "auto", cudnn_benchmark: bool | None = None) -> torch.device:
    """``"auto"`` -> ``cuda:LOCAL_RANK`` if CUDA is available else ``cpu``; other strings as given.

    ``cudnn_benchmark`` (CUDA only; None leaves it alone): let cuDNN time its convolution
    algorithms once per input shape and keep the fastest. Training crops have fixed lengths, so
    this pays off (measured on an H100: an SSRL step of the paper model at batch 240 took 126
    instead of 137 ms); embedding extraction of whole utterances switches it off again (every
    length is a new shape), see :func:`ssrl_lab.eval.embed.extract_embeddings`.
    """
    if spec == "auto":
        dev = torch.device(f"cuda:{dist.local_rank()}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(spec)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    if dev.type == "cuda" and cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    return dev


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` ("auto": bf16 on CUDA, off on CPU; "bf16"; "off")."""
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "bf16":
        return torch.bfloat16
    raise ValueError(f"amp {amp!r} is not one of auto, bf16, off")


def autocast(device: torch.device, amp: str):
    """A context manager running the forward pass in bf16 when asked (no-op otherwise)."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class StepTimer:
    """Wall-clock timer that synchronises CUDA first, so it measures the device work."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA when present) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ShardedSampler(Sampler[int]):
    """Per-epoch seeded shuffle, sharded over ranks (DistributedSampler semantics).

    ``drop_last``: drop the tail so every rank gets the same number of indices without
    padding; otherwise the permutation is padded by wrapping.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world: int | None = None) -> None:
        self.n = int(n)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank = dist.rank() if rank is None else rank
        self.world = dist.world_size() if world is None else world
        self.epoch = 0
        if self.drop_last:
            self.per_rank = self.n // self.world
        else:
            self.per_rank = math.ceil(self.n / self.world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world
        if total > len(order):
            order = (order * math.ceil(total / max(len(order), 1)))[:total]
        order = order[:total]
        return order[self.rank:total:self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_rank


def collate(items: list[dict]) -> dict:
    """Stack a list of dataset items: tensors stacked, lists of tensors stacked per position."""
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(v0, (list, tuple)) and v0 and isinstance(v0[0], torch.Tensor):
            out[key] = [torch.stack([v[i] for v in vals]) for i in range(len(v0))]
        elif isinstance(v0, (int, np.integer)):
            out[key] = torch.as_tensor(np.asarray(vals, dtype=np.int64))
        elif isinstance(v0, (float, np.floating)):
            out[key] = torch.as_tensor(np.asarray(vals, dtype=np.float32))
        else:
            out[key] = vals
    return out


SKIPS_KEY = "_skipped"


class _CollateNotingSkips:
    """:func:`collate`, plus the files the dataset skipped while making the batch's items (it runs
    where the items are made, in a worker process or this one)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __call__(self, items: list[dict]) -> dict:
        batch = collate(items)
        take = getattr(self.dataset, "take_skips", None)
        notes = take() if take is not None else None
        if notes:
            batch[SKIPS_KEY] = notes
        return batch


class SkipCountingLoader(DataLoader):
    """A DataLoader that hands the skip notes of each batch to the running training's ledger
    (:func:`ssrl_lab.train.skips.record`) and removes them from the batch."""

    def __iter__(self):
        from .skips import record

        for batch in super().__iter__():
            notes = batch.pop(SKIPS_KEY, None) if isinstance(batch, dict) else None
            if notes:
                record(notes)
            yield batch


def make_loader(dataset, batch_size: int, epoch: int, seed: int, shuffle: bool = True,
                drop_last: bool = True, num_workers: int = 0) -> DataLoader:
    """A DataLoader for one epoch of ``dataset`` on this rank (``batch_size`` per rank).

    The dataset's ``set_epoch`` (if any) and the sampler's are called with ``epoch``, so item
    randomness and order depend only on ``(seed, epoch, index)``. Workers are not persistent:
    a new loader per epoch carries the epoch into forked workers.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler = ShardedSampler(len(dataset), shuffle=shuffle, seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    return SkipCountingLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                              collate_fn=_CollateNotingSkips(dataset), drop_last=drop_last,
                              pin_memory=torch.cuda.is_available(), persistent_workers=False)


def steps_per_epoch(n_items: int, batch_size: int, drop_last: bool = True) -> int:
    """Optimiser steps per epoch on every rank for ``n_items`` sharded over the world."""
    per_rank = n_items // dist.world_size() if drop_last else math.ceil(n_items / dist.world_size())
    steps = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    return max(int(steps), 0)


def progress(iterable: Iterable, enabled: bool, **kw):
    """tqdm over ``iterable`` on the main process when ``enabled``; the iterable otherwise."""
    if not enabled or not dist.is_main():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, leave=False, **kw)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: decayed weights, and biases / norm parameters (1-d) without decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "apply_wd": True},
            {"params": no_decay, "weight_decay": 0.0, "apply_wd": False}]


def set_lr_wd(optimizer: torch.optim.Optimizer, lr: float, wd: float | None = None) -> None:
    """Set every group's lr (times its ``lr_scale`` if any) and, for decayed groups, weight decay."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
        if wd is not None and g.get("apply_wd", True):
            g["weight_decay"] = wd


def build_optimizer(name: str, groups: list[dict], lr: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``"sgd"`` (momentum, as the paper), ``"adamw"`` or ``"adam"``."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    raise ValueError(f"optimizer {name!r} is not one of sgd, adamw, adam")


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip the total gradient norm (0 disables); returns the norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    if max_norm and max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.norm(torch.stack([p.grad.detach().norm() for p in params])))


def wrap_ddp(model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """Wrap in DistributedDataParallel when distributed (optionally converting to SyncBatchNorm)."""
    if dist.world_size() == 1:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def use_sync_bn(flag: str | bool, device: torch.device) -> bool:
    """Resolve the ``sync_bn`` config value: ``"auto"`` = on for CUDA with several ranks."""
    if isinstance(flag, bool):
        return flag and dist.world_size() > 1
    return device.type == "cuda" and dist.world_size() > 1


# -- the configuration every trainer shares ------------------------------------------------


@dataclasses.dataclass
class TrainConfig(Config):
    """Fields shared by every method's config (each method's config derives from this one).

    ``corpus``: corpus directory (``corpus.json``); ``run_dir``: output folder; ``seed``;
    ``device`` ("auto" = cuda:LOCAL_RANK when CUDA, else cpu); ``amp`` ("auto" = bf16 on CUDA,
    "bf16", "off"); ``num_workers`` (DataLoader processes); ``sync_bn`` ("auto" = on for CUDA with
    several ranks, "on", "off"); ``preload`` (decode the training table into memory once);
    ``skip_bad`` (substitute unreadable training files instead of raising, and drop those
    ``python -m ssrl_lab.data.check`` listed before the first step); ``max_skip_fraction`` (stop
    when more than this share of the training files was skipped; see :mod:`ssrl_lab.train.skips`); ``augment``
    (AugmentConfig fields; ``null`` = no waveform augmentation); ``spec_augment`` (SpecAugment on
    student features); ``eval_every`` (epochs between evaluations; 0 = only at the end);
    ``eval_batch_size``, ``eval_chunk_s``, ``eval_max_len_s``, ``eval_bucket_s`` (embedding extraction;
    ``eval_bucket_s`` trims test utterances to a length grid so that they batch);
    ``max_steps_per_epoch`` (0 = the whole table; tests cap it); ``cudnn_benchmark`` (CUDA: let
    cuDNN pick the fastest convolution algorithm per crop shape; see :func:`resolve_device`);
    ``augment_on`` (``"loader"``: the DataLoader workers augment each crop, the default;
    ``"batch"``: the workers only decode and crop, and the trainer augments the batch on the
    training device, see :mod:`ssrl_lab.data.batch_augment`); ``compile`` (``torch.compile`` the
    encoders' forward and backward in place; off by default, see :func:`compile_encoders`);
    ``tracking`` (where every metrics line also goes: "tensorboard", "mlflow" or "none"; see
    :mod:`ssrl_lab.tracking`; not part of the run's identity).
    """

    corpus: str = ""
    run_dir: str = ""
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    num_workers: int = 0
    sync_bn: str = "auto"
    preload: bool = False
    skip_bad: bool = False
    max_skip_fraction: float = 0.01
    encoder: EncoderConfig = dataclasses.field(default_factory=lambda: EncoderConfig.preset("tiny"))
    augment: dict | None = dataclasses.field(default_factory=dict)
    spec_augment: bool = False
    eval_every: int = 0
    eval_batch_size: int = 16
    eval_chunk_s: float | None = None
    eval_max_len_s: float | None = None
    eval_bucket_s: float | None = None
    max_steps_per_epoch: int = 0
    cudnn_benchmark: bool = True
    augment_on: str = "loader"
    compile: bool = False
    tracking: str = "tensorboard"

    def validate(self) -> None:
        from ..tracking import check_mode

        check_mode(self.tracking)
        check(self.augment_on in ("loader", "batch"), f"augment_on must be loader or batch, got {self.augment_on!r}")
        check(self.amp in ("auto", "bf16", "off"), f"amp must be auto, bf16 or off, got {self.amp!r}")
        check(self.sync_bn in ("auto", "on", "off"), f"sync_bn must be auto, on or off, got {self.sync_bn!r}")
        check(0.0 <= self.max_skip_fraction <= 1.0,
              f"max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")
        check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        check(self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}")
        check(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        for name in ("eval_chunk_s", "eval_max_len_s", "eval_bucket_s"):
            v = getattr(self, name)
            check(v is None or v > 0, f"{name} must be positive seconds or None, got {v}")
        check(self.max_steps_per_epoch >= 0, f"max_steps_per_epoch must be >= 0, got {self.max_steps_per_epoch}")
        if self.augment is not None:
            try:
                from ..data.augment import AugmentConfig
            except ImportError:  # pragma: no cover - the data layer is always installed
                return
            AugmentConfig.from_dict(self.augment, _prefix="augment.")

    #: the named profiles of a trainer's config (``{"smoke": {...}, "demo": {...}, "vox": {...}}``),
    #: set by the trainer's module: ``smoke`` (seconds, tests), ``demo`` (the SynthVox demo corpus
    #: on CPU), ``vox`` (VoxCeleb, the paper's settings)
    PROFILES: ClassVar[dict] = {}

    @classmethod
    def profile(cls, name: str, **overrides):
        """The config of profile ``name`` (:attr:`PROFILES`) with ``overrides`` (nested dicts merge)."""
        return cls._profile(cls.PROFILES, name, overrides)

    @classmethod
    def _profile(cls, profiles: dict, name: str, overrides: dict):
        """Build profile ``name`` from ``profiles`` then apply ``overrides`` (nested dicts merge)."""
        if name not in profiles:
            from ..config import ConfigError

            raise ConfigError(f"unknown profile {name!r} for {cls.__name__}; valid: {', '.join(profiles)}")
        base = dict(profiles[name])
        enc = base.pop("encoder_preset", None)
        if enc is not None:
            base["encoder"] = EncoderConfig.preset(enc, **base.pop("encoder", {})).to_dict()
        cfg = cls.from_dict(base)
        return cfg.replace(**overrides) if overrides else cfg


@dataclasses.dataclass
class OptimConfig(TrainConfig):
    """The fields of the trainers with a cosine learning rate (DINO, the classifier trainers):
    the global ``batch_size``, ``epochs``, ``optimizer`` ("sgd" with ``sgd_momentum``, "adamw",
    "adam"), ``lr`` -> ``min_lr`` (cosine after ``warmup_epochs`` of linear warm-up),
    ``weight_decay`` (none on biases and norms) and ``clip_grad`` (the total gradient norm; 0 = off)."""

    batch_size: int = 64
    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 0.0
    weight_decay: float = 5e-5
    sgd_momentum: float = 0.9
    clip_grad: float = 3.0

    def validate(self) -> None:
        super().validate()
        check(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.optimizer in ("sgd", "adamw", "adam"), f"optimizer must be sgd, adamw or adam, got {self.optimizer!r}")
        check(self.lr > 0 and self.min_lr >= 0, f"lr must be > 0 and min_lr >= 0 (lr={self.lr}, min_lr={self.min_lr})")
        check(0 <= self.warmup_epochs <= self.epochs, f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        check(self.clip_grad >= 0, f"clip_grad must be >= 0 (0 = off), got {self.clip_grad}")


def sync_bn_enabled(cfg: TrainConfig, device: torch.device) -> bool:
    return use_sync_bn({"on": True, "off": False}.get(cfg.sync_bn, "auto"), device)


def build_augmenter(cfg: TrainConfig, table):
    """The loader-side waveform Augmenter of ``cfg.augment`` (None when augmentation is off or
    done in the batch, ``augment_on="batch"``)."""
    if cfg.augment is None or cfg.augment_on == "batch":
        return None
    from ..data.augment import AugmentConfig, Augmenter

    return Augmenter(AugmentConfig.from_dict(cfg.augment, _prefix="augment."), babble_table=table, seed=cfg.seed)


def build_batch_augment(cfg: TrainConfig, table, device: torch.device):
    """The trainers' batch hook ``batch = hook(batch, epoch)``: with ``augment_on="batch"`` it
    augments the batch's crops on ``device`` (:class:`~ssrl_lab.data.batch_augment.BatchAugmenter`,
    sources loaded once per process); otherwise the identity."""
    from ..data.batch_augment import BatchAugmenter, augment_batch_fn

    if cfg.augment is None or cfg.augment_on != "batch":
        return augment_batch_fn(None)
    from ..data.augment import AugmentConfig

    aug = BatchAugmenter(AugmentConfig.from_dict(cfg.augment, _prefix="augment."), babble_table=table,
                         seed=cfg.seed, device=device)
    return augment_batch_fn(aug.prepare())


def compile_encoders(cfg: TrainConfig, *models: nn.Module) -> None:
    """With ``cfg.compile``, ``torch.compile`` every speaker encoder inside ``models`` in place
    (``nn.Module.compile``: parameters, state dicts and checkpoints are unchanged; backward is
    compiled by AOTAutograd). The Fbank front end stays eager. A no-op when ``compile`` is off."""
    if not cfg.compile:
        return
    from ..models.speaker_net import SpeakerNet

    seen = set()
    for model in models:
        for m in model.modules():
            if isinstance(m, SpeakerNet) and id(m.encoder) not in seen:
                seen.add(id(m.encoder))
                m.encoder.compile()
    log.info("torch.compile: %d encoder(s) compiled in place", len(seen))


def build_spec_augment(cfg: TrainConfig):
    if not cfg.spec_augment:
        return None
    from ..features import SpecAugment

    return SpecAugment()


def evaluate_model(model: nn.Module, corpus, cfg: TrainConfig, device: torch.device, progress: bool = False,
                   return_scores: bool = False, all_pairs: bool = True, ci: bool | None = None) -> dict:
    """ssrl_lab.eval.evaluate with the config's extraction settings (call on every rank).

    ``ci`` (default: with ``return_scores``, i.e. the evaluations whose results a run keeps):
    the test split's 95 % speaker-bootstrap intervals (``CI_REPS`` replicates)."""
    from ..eval.bootstrap import CI_REPS
    from ..eval.evaluate import evaluate

    ci = return_scores if ci is None else ci
    return evaluate(model, corpus, device=device, all_pairs=all_pairs, return_scores=return_scores,
                    batch_size=cfg.eval_batch_size, chunk_s=cfg.eval_chunk_s, max_len_s=cfg.eval_max_len_s,
                    bucket_s=cfg.eval_bucket_s,
                    progress=progress and dist.is_main(), skip_bad=cfg.skip_bad, seed=cfg.seed,
                    ci_reps=CI_REPS if ci else 0)


#: the metric keys of results.json: the test split's, then the same prefixed ``dev_`` (the dev
#: split's; None when the corpus has no dev split), then the test split's confidence intervals
RESULT_KEYS = ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05", "mindcf_0.01_all_pairs", "mindcf_0.05_all_pairs",
               "n_trials", "n_pairs")
RESULT_KEYS = RESULT_KEYS + tuple(f"dev_{k}" for k in RESULT_KEYS) + (
    "eer_ci", "mindcf_0.01_ci", "mindcf_0.05_ci", "eer_all_pairs_ci", "mindcf_0.01_all_pairs_ci",
    "mindcf_0.05_all_pairs_ci", "ci_reps", "ci_level")


def result_fields(ev: dict) -> dict:
    """The results.json fields of an evaluation dict (:data:`RESULT_KEYS`)."""
    return {k: ev.get(k) for k in RESULT_KEYS}


def eval_summary(ev: dict) -> dict:
    """The JSON-ready part of an evaluation (scores and the other arrays dropped)."""
    from ..eval.evaluate import SCORE_ARRAYS

    return {k: v for k, v in ev.items() if k not in ("scores", "labels", *SCORE_ARRAYS)}


def score_arrays(ev: dict) -> dict:
    """What ``RunDir.write_scores`` keeps beside the trial scores: the test embeddings, their
    speaker codes and the trials' table rows (when the evaluation returned them)."""
    from ..eval.evaluate import SCORE_ARRAYS

    return {k: ev[k] for k in SCORE_ARRAYS if ev.get(k) is not None}


def skip_batches(loader: DataLoader, n: int) -> DataLoader:
    """The same epoch's loader without its first ``n`` batches (resuming mid-epoch).

    The batches keep the order of ``loader`` (same sampler permutation); the skipped ones are
    never loaded. ``n <= 0`` returns ``loader`` itself.
    """
    if n <= 0:
        return loader
    batches = list(loader.batch_sampler)[n:]
    return SkipCountingLoader(loader.dataset, batch_sampler=batches, num_workers=loader.num_workers,
                              collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, persistent_workers=False)
