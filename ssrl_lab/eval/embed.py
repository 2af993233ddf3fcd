"""Embedding extraction: one float32 vector per utterance of an :class:`UtteranceTable`.

How an utterance becomes one embedding (no embedding ever depends on its batchmates, because a
batch only ever holds inputs of exactly the same number of samples: nothing is padded across
utterances):

* ``chunk_s=None`` (default, exact): the whole utterance is one input. Utterances are visited
  in order of duration and grouped into batches of equal sample count; different lengths are
  forwarded separately. Utterances longer than ``max_len_s`` are cut into ``max_len_s`` chunks
  instead (the last chunk taken from the end, overlapping its neighbour) and the chunk
  embeddings averaged.
* ``chunk_s=x``: every utterance is cut into chunks of ``x`` seconds (last chunk from the end,
  overlapping); an utterance shorter than ``x`` becomes one chunk padded by repeating it
  ("wrap" padding). All chunks have the same length, so they go through the model in full
  batches; an utterance's embedding is the mean of its chunk embeddings (raw, before any
  normalisation).

The result can be cached in an ``.npz`` (``emb``, ``utt_id``, ``fingerprint``); the
fingerprint covers ``cache_key`` (the caller's identity for the checkpoint; when ``None`` a
hash of the model's parameters and buffers), the table's utt_ids and the extraction settings
(``chunk_s``, ``max_len_s``), so a stale cache is recomputed rather than reused.

Under ``torch.distributed`` (initialised, world size > 1) each rank embeds every
``world``-th utterance of the duration-sorted table and the results are all-gathered.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..data.audio import SAMPLE_RATE, AudioError, load_audio
from ..utils.io import atomic_numpy_save

__all__ = ["extract_embeddings", "model_fingerprint", "cache_fingerprint", "segments", "load_cached"]

log = logging.getLogger("ssrl_lab.eval.embed")

_CACHE_VERSION = 1


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_fingerprint(utt_ids, cache_key: str, chunk_s, max_len_s, bucket_s=None) -> str:
    """Fingerprint of an extraction: checkpoint identity, utt_ids and settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": _CACHE_VERSION, "key": str(cache_key), "chunk_s": chunk_s,
                         "max_len_s": max_len_s, "sr": SAMPLE_RATE,
                         **({"bucket_s": bucket_s} if bucket_s is not None else {})}, sort_keys=True).encode())
    h.update("\n".join(utt_ids).encode())
    return h.hexdigest()


def load_cached(cache_path, fingerprint: str, utt_ids) -> np.ndarray | None:
    """The cached embeddings when ``cache_path`` holds a matching extraction, else None."""
    p = Path(cache_path)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint or z["utt_id"].tolist() != list(utt_ids):
                log.info("embedding cache %s is stale; recomputing", p)
                return None
            return z["emb"].astype(np.float32, copy=False)
    except (OSError, KeyError, ValueError) as e:
        log.warning("embedding cache %s unreadable (%s); recomputing", p, e)
        return None


def segments(n: int, seg: int | None, pad_short: bool) -> list[tuple[int, int]]:
    """``(start, length)`` pieces covering ``n`` samples with pieces of ``seg`` samples.

    ``seg=None`` or ``n <= seg``: one piece, the whole signal (its length is ``seg`` when
    ``pad_short``, meaning the caller wrap-pads it). Otherwise ``ceil(n / seg)`` pieces starting
    at ``0, seg, 2 seg, ...``, the last one moved back to end at ``n``.
    """
    if seg is None or n <= seg:
        return [(0, seg if (pad_short and seg is not None) else n)]
    k = math.ceil(n / seg)
    starts = [min(i * seg, n - seg) for i in range(k)]
    return [(s, seg) for s in starts]


def _cut(wave: np.ndarray, start: int, length: int) -> np.ndarray:
    piece = wave[start : start + length]
    if piece.shape[0] < length:  # wrap ("repeat") padding of a short utterance
        piece = np.resize(wave, length)
    return piece


def _trim_to_bucket(wave: np.ndarray, bucket: int) -> np.ndarray:
    """The centre of ``wave`` trimmed to a multiple of ``bucket`` samples (short clips whole)."""
    keep = (wave.shape[0] // bucket) * bucket
    if keep == 0 or keep == wave.shape[0]:
        return wave
    start = (wave.shape[0] - keep) // 2
    return wave[start : start + keep]


class _Waves(torch.utils.data.Dataset):
    """Loads ``table.path[rows[i]]``; returns ``(i, wave | None, error | None)``."""

    def __init__(self, table, rows: np.ndarray, skip_bad: bool):
        self.paths = [table.path[r] for r in rows]
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, load_audio(self.paths[i]), None
        except AudioError as e:
            if not self.skip_bad:
                raise
            return i, None, str(e)


class _Accumulator:
    """Runs equal-length batches through the model and averages pieces per utterance."""

    def __init__(self, model, device, n: int, batch_size: int):
        self.model, self.device, self.n, self.batch_size = model, device, n, batch_size
        self.sums: np.ndarray | None = None
        self.counts = np.zeros(n, dtype=np.int64)
        self.buckets: dict[int, list[tuple[int, np.ndarray]]] = {}
        self.pending = 0

    def add(self, pos: int, piece: np.ndarray) -> None:
        bucket = self.buckets.setdefault(piece.shape[0], [])
        bucket.append((pos, piece))
        self.pending += 1
        if len(bucket) >= self.batch_size:
            self._flush(piece.shape[0])
        elif self.pending >= 2 * self.batch_size:
            self.flush_all()

    def flush_all(self) -> None:
        for length in list(self.buckets):
            self._flush(length)

    def _flush(self, length: int) -> None:
        items = self.buckets.pop(length)
        self.pending -= len(items)
        for s in range(0, len(items), self.batch_size):
            part = items[s : s + self.batch_size]
            x = torch.from_numpy(np.stack([w for _, w in part])).to(self.device)
            out = self.model(x)
            if out.ndim != 2 or out.shape[0] != len(part):
                raise ValueError(f"model must map (B, T) to (B, D); got output shape {tuple(out.shape)} "
                                 f"for input {tuple(x.shape)}")
            e = out.float().cpu().numpy()
            if self.sums is None:
                self.sums = np.zeros((self.n, e.shape[1]), dtype=np.float64)
            pos = np.array([p for p, _ in part])
            np.add.at(self.sums, pos, e)
            np.add.at(self.counts, pos, 1)

    def result(self, dim_fallback) -> np.ndarray:
        self.flush_all()
        if self.sums is None:
            return np.full((self.n, dim_fallback()), np.nan, dtype=np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self.sums / self.counts[:, None]
        out[self.counts == 0] = np.nan
        return out.astype(np.float32)


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _embed_rows(model, table, rows, device, batch_size, chunk_s, max_len_s, progress, skip_bad, num_workers,
                bucket_s=None):
    from tqdm.auto import tqdm

    seg = None
    pad_short = False
    if chunk_s is not None:
        seg, pad_short = int(round(chunk_s * SAMPLE_RATE)), True
        if max_len_s is not None:
            seg = min(seg, int(round(max_len_s * SAMPLE_RATE)))
    elif max_len_s is not None:
        seg = int(round(max_len_s * SAMPLE_RATE))
    acc = _Accumulator(model, device, len(rows), batch_size)
    loader = torch.utils.data.DataLoader(_Waves(table, rows, skip_bad), batch_size=None, shuffle=False,
                                         num_workers=num_workers)
    skipped = []
    for i, wave, err in tqdm(loader, total=len(rows), disable=not progress, desc="embedding", unit="utt"):
        if wave is None:
            skipped.append((table.utt_id[rows[i]], err))
            continue
        wave = np.asarray(wave, dtype=np.float32)
        if bucket_s is not None and chunk_s is None:
            wave = _trim_to_bucket(wave, int(round(bucket_s * SAMPLE_RATE)))
        for start, length in segments(wave.shape[0], seg, pad_short):
            acc.add(int(i), _cut(wave, start, length))
    for utt, err in skipped:
        log.warning("skipped %s: %s (its embedding is NaN)", utt, err)

    def dim():
        d = getattr(model, "emb_dim", None)
        if d is None:
            d = model(torch.zeros(1, SAMPLE_RATE, device=device)).shape[1]
        return int(d)

    return acc.result(dim), dim


def _gather(local: np.ndarray, order: np.ndarray, rank: int, world: int, device) -> np.ndarray:
    import torch.distributed as dist

    n = order.shape[0]
    per = math.ceil(n / world)
    on = torch.device("cuda", torch.cuda.current_device()) if "nccl" in str(dist.get_backend()) else torch.device("cpu")
    buf = torch.full((per, local.shape[1]), float("nan"), dtype=torch.float32, device=on)
    buf[: local.shape[0]] = torch.from_numpy(local).to(on)
    parts = [torch.empty_like(buf) for _ in range(world)]
    dist.all_gather(parts, buf)
    out = np.empty((n, local.shape[1]), dtype=np.float32)
    for r, p in enumerate(parts):
        rows = order[r::world]
        out[rows] = p[: rows.shape[0]].cpu().numpy()
    return out


def extract_embeddings(
    model: torch.nn.Module,
    table,
    device="cpu",
    batch_size: int = 32,
    chunk_s: float | None = None,
    max_len_s: float | None = None,
    cache_path=None,
    cache_key: str | None = None,
    progress: bool = True,
    skip_bad: bool = False,
    num_workers: int = 0,
    bucket_s: float | None = None,
) -> np.ndarray:
    """Embed every utterance of ``table``; returns float32 ``(len(table), D)`` in table order.

    ``model``: any nn.Module mapping a ``(B, T)`` waveform tensor to ``(B, D)`` (e.g.
    ``SpeakerNet``); it is moved to ``device`` and run in eval mode under
    ``torch.inference_mode()`` (its train/eval mode is restored afterwards). See the module
    docstring for ``chunk_s`` / ``max_len_s`` and for the cache (``cache_path``, ``cache_key``).
    ``skip_bad``: an unreadable file (``AudioError``) is logged and its row is NaN instead of
    raising. ``num_workers``: DataLoader processes that decode audio. ``bucket_s`` (full-length
    mode only): trim each utterance, keeping its centre, to the largest multiple of ``bucket_s``
    seconds, so that utterances of similar length share a batch (at most ``bucket_s`` of audio is
    dropped; an utterance shorter than one bucket is kept whole). ``None`` embeds exact lengths,
    which on a corpus where every length differs means one utterance per forward pass.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for name, v in (("chunk_s", chunk_s), ("max_len_s", max_len_s), ("bucket_s", bucket_s)):
        if v is not None and not v > 0:
            raise ValueError(f"{name} must be positive seconds or None, got {v}")
    n = len(table)
    if n == 0:
        raise ValueError("extract_embeddings: the utterance table is empty")
    fp = None
    if cache_path is not None:
        key = cache_key if cache_key is not None else "model:" + model_fingerprint(model)
        fp = cache_fingerprint(table.utt_id, key, chunk_s, max_len_s, bucket_s)
        cached = load_cached(cache_path, fp, table.utt_id)
        if cached is not None:
            log.info("embeddings of %d utterances loaded from %s", n, cache_path)
            return cached

    rank, world = _dist_info()
    dur = np.asarray(table.duration, dtype=np.float64)
    order = np.argsort(np.where(np.isfinite(dur), dur, np.inf), kind="stable")
    rows = order[rank::world] if world > 1 else order
    was_training = model.training
    model.to(device)
    model.eval()
    # whole utterances come in many lengths: cuDNN's per-shape algorithm search (benchmark mode,
    # worth it for the fixed training crops) would run again for nearly every batch
    cudnn = torch.backends.cudnn
    try:
        with torch.inference_mode(), cudnn.flags(enabled=cudnn.enabled,
                                                 benchmark=cudnn.benchmark and chunk_s is not None,
                                                 deterministic=cudnn.deterministic, allow_tf32=cudnn.allow_tf32):
            local, _ = _embed_rows(model, table, rows, device, batch_size, chunk_s, max_len_s,
                                   progress and rank == 0, skip_bad, num_workers, bucket_s)
    finally:
        model.train(was_training)
    if world > 1:
        emb = _gather(local, order, rank, world, device)
    else:
        emb = np.empty_like(local)
        emb[rows] = local
    if cache_path is not None and rank == 0:
        atomic_numpy_save(cache_path, emb=emb, utt_id=np.asarray(table.utt_id), fingerprint=np.asarray(fp))
    return emb
