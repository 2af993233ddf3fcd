"""Pack a corpus once into large int16 shards (the ``packed`` format of :mod:`ssrl_lab.data.packed`).

::

    python -m ssrl_lab.data.pack --corpus DIR --out DIR [--shard-mb 512] [--splits train,test,dev] [--workers N]

Every utterance of the corpus's splits is decoded once (wav/flac with soundfile, m4a/aac with
PyAV, resampled to 16 kHz, stereo averaged), quantised to int16 and appended to
``OUT/<split>/shard-NNNNN.pcm16``; ``OUT/<split>/index.tsv`` lists utterance, speaker, session,
shard, offset and length, and ``OUT/corpus.json`` names the packed splits (``format: "packed"``)
and copies of the trial lists (``trials``, and ``dev_trials`` when the corpus has a dev split).
By default every split the corpus has is packed (train, test, and dev when present); splits not
packed keep their original spec (absolute paths).

* **Atomic and resumable per shard.** Utterances are assigned to shards up front (by the
  table's durations, ``--shard-mb`` of int16 each) and the plan is written to ``OUT/pack.json``.
  A shard's samples are written to a temporary file and renamed, then its part of the index
  (``shard-NNNNN.tsv``); a rerun skips shards whose index part exists, so an interrupted packing
  continues where it stopped.
* **Refuses to overwrite**: an ``OUT`` holding a finished packing (``corpus.json``), a packing
  of another corpus or other settings, or anything else, is refused.
* Unreadable utterances (missing, corrupt, empty, silent) are skipped, logged and counted in
  ``OUT/pack.json``; they are absent from the index.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..utils.io import atomic_write_bytes, atomic_write_json, atomic_write_stream, atomic_write_text
from .audio import AudioError, load_audio
from .corpus import CORPUS_FILE, open_corpus
from .packed import INDEX_FILE, SAMPLE_RATE, SHARD_SUFFIX, index_tsv, read_index_file
from .table import UtteranceTable

log = logging.getLogger("ssrl_lab.data.pack")
PLAN_FILE = "pack.json"
SPLITS = ("train", "test", "dev")


class PackError(RuntimeError):
    """The output directory cannot be used for this packing."""


def _fingerprint(table: UtteranceTable) -> str:
    h = hashlib.sha256()
    for u, p in zip(table.utt_id, table.path):
        h.update(f"{u}\t{p}\n".encode())
    return h.hexdigest()


def plan_shards(durations: np.ndarray, shard_bytes: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, stop)`` row ranges of about ``shard_bytes`` of int16 each (unknown
    durations count as 8 s)."""
    d = np.where(np.isfinite(durations) & (durations > 0), durations, 8.0)
    nbytes = d * SAMPLE_RATE * 2
    out, start, acc = [], 0, 0.0
    for i, b in enumerate(nbytes):
        if acc > 0 and acc + b > shard_bytes:
            out.append((start, i))
            start, acc = i, 0.0
        acc += b
    if start < len(nbytes):
        out.append((start, len(nbytes)))
    return out


def _to_int16(wave: np.ndarray) -> np.ndarray:
    return np.clip(np.round(wave.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")


def pack_shard(split_dir: str, k: int, rows: list[tuple[str, str | None, str, str]]) -> dict:
    """Decode ``rows`` (utt_id, speaker, session, path) into shard ``k`` of ``split_dir``; atomic.

    Returns ``{"shard", "utterances", "samples", "skipped": [(path, reason), ...]}``."""
    d = Path(split_dir)
    name = f"shard-{k:05d}{SHARD_SUFFIX}"
    chunks, index, skipped, off = [], [], [], 0
    for utt, spk, sess, path in rows:
        try:
            q = _to_int16(load_audio(path))
        except AudioError as e:
            log.warning("skipped %s: %s%s", e.path, e.reason, f" ({e.detail})" if e.detail else "")
            skipped.append((e.path, e.reason))
            continue
        chunks.append(q)
        index.append((utt, spk, sess, name, off, len(q)))
        off += len(q)
    atomic_write_stream(d / name, lambda fh: [fh.write(c.tobytes()) for c in chunks])
    atomic_write_text(d / f"shard-{k:05d}.tsv", index_tsv(index))  # written last: the shard is done
    return {"shard": k, "utterances": len(index), "samples": off, "skipped": skipped}


def _check_out(out: Path, plan: dict) -> bool:
    """True when ``out`` holds an unfinished packing with this very plan (resume); raises when it
    holds anything else; False when it is new or empty."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise PackError(f"--out {out} exists and is not a directory")
    if (out / CORPUS_FILE).exists():
        raise PackError(f"--out {out} already holds a finished packed corpus ({CORPUS_FILE}); "
                        "refusing to overwrite it: choose another --out or delete it")
    if (out / PLAN_FILE).is_file():
        old = json.loads((out / PLAN_FILE).read_text(encoding="utf-8"))
        keys = ("corpus", "shard_bytes", "splits", "fingerprints")
        diff = [k for k in keys if old.get(k) != plan.get(k)]
        if diff:
            raise PackError(f"--out {out} holds an unfinished packing with other settings or of another corpus "
                            f"(differing: {', '.join(diff)}); refusing to overwrite it: choose another --out")
        return True
    if any(out.iterdir()):
        raise PackError(f"--out {out} is not empty and holds no packing; refusing to write into it")
    return False


def pack_corpus(corpus, out, shard_mb: float = 512.0, splits=None, workers: int = 1) -> dict:
    """Pack ``corpus`` (a corpus directory) into ``out``; returns the final report (also in
    ``out/pack.json``). ``splits``: None = every split the corpus has. See the module doc."""
    t0 = time.perf_counter()
    corpus_dir = Path(corpus).expanduser().resolve()
    out = Path(out).expanduser().resolve()
    if shard_mb <= 0:
        raise PackError(f"--shard-mb must be > 0, got {shard_mb}")
    c = open_corpus(corpus_dir)
    present = tuple(s for s in SPLITS if getattr(c, s, None) is not None)
    splits = present if splits is None else tuple(splits)
    bad = [s for s in splits if s not in present]
    if bad or not splits:
        raise PackError(f"--splits: unknown or absent split(s) {bad}; this corpus has: {', '.join(present)}")
    tables = {s: getattr(c, s) for s in splits}
    shard_bytes = int(shard_mb * 2**20)
    plan = {"corpus": str(corpus_dir), "shard_bytes": shard_bytes, "splits": list(splits),
            "fingerprints": {s: _fingerprint(t) for s, t in tables.items()},
            "shards": {s: plan_shards(t.duration, shard_bytes) for s, t in tables.items()}}
    resuming = _check_out(out, plan)
    out.mkdir(parents=True, exist_ok=True)
    if not resuming:
        atomic_write_json(out / PLAN_FILE, plan)
    report = {"splits": {}}
    for s, t in tables.items():
        d = out / s
        d.mkdir(exist_ok=True)
        ranges = plan["shards"][s]
        todo = [k for k in range(len(ranges)) if not (d / f"shard-{k:05d}.tsv").is_file()]
        log.info("%s: %d utterances in %d shards (%d to write%s)", s, len(t), len(ranges), len(todo),
                 ", resuming" if resuming else "")
        jobs = [(str(d), k, [(t.utt_id[i], t.speaker[i], t.session[i], t.path[i]) for i in range(*ranges[k])])
                for k in todo]
        done = []
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                for r in ex.map(pack_shard, *zip(*jobs)):
                    done.append(r)
                    log.info("%s: shard %d written (%d utterances)", s, r["shard"], r["utterances"])
        else:
            for job in jobs:
                r = pack_shard(*job)
                done.append(r)
                log.info("%s: shard %d written (%d utterances)", s, r["shard"], r["utterances"])
        rows = []
        for k in range(len(ranges)):
            rows.extend(read_index_file(d / f"shard-{k:05d}.tsv"))
        if not rows:
            raise PackError(f"{s}: no readable utterance to pack")
        atomic_write_text(d / INDEX_FILE, index_tsv(rows))
        skipped = len(t) - len(rows)
        report["splits"][s] = {"utterances": len(rows), "skipped": skipped, "shards": len(ranges),
                               "hours": sum(r[5] for r in rows) / SAMPLE_RATE / 3600,
                               "bytes": 2 * sum(r[5] for r in rows),
                               "skipped_now": [p for r in done for p in r["skipped"]][:1000]}
    spec = dict(c.spec)
    new = {"name": f"{spec['name']}-packed", "description": f"{c.name} packed by ssrl_lab.data.pack from {corpus_dir}"}
    for key in ("trials", "dev_trials"):
        if spec.get(key):
            src = Path(spec[key]) if Path(spec[key]).is_absolute() else corpus_dir / spec[key]
            atomic_write_bytes(out / f"{key}.txt", src.read_bytes())
            new[key] = f"{key}.txt"
    for s in SPLITS:
        if s in splits:
            new[s] = {"format": "packed", "path": s}
        elif s in spec:  # keep the original spec, its relative paths made absolute
            orig = dict(spec[s]) if isinstance(spec[s], dict) else {"format": "table", "path": spec[s]}
            for key in ("path", "root", "cache_dir"):
                if key in orig and isinstance(orig[key], str) and not Path(orig[key]).is_absolute():
                    orig[key] = str(corpus_dir / orig[key])
            new[s] = orig
    report.update(plan={k: plan[k] for k in ("corpus", "shard_bytes", "splits")}, seconds=time.perf_counter() - t0)
    atomic_write_json(out / PLAN_FILE, {**plan, "report": report})
    atomic_write_json(out / CORPUS_FILE, new)  # last: its presence marks the packing finished
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.data.pack", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus directory (with corpus.json)")
    ap.add_argument("--out", required=True, help="output directory (new or empty, or an unfinished packing to resume)")
    ap.add_argument("--shard-mb", type=float, default=512.0, help="int16 megabytes per shard (default 512)")
    ap.add_argument("--splits", default="", help="splits to pack, e.g. train,test (default: every split the corpus has)")
    ap.add_argument("--workers", type=int, default=1, help="processes decoding shards in parallel (default 1)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        rep = pack_corpus(args.corpus, args.out, args.shard_mb, [s for s in args.splits.split(",") if s] or None,
                          max(1, args.workers))
    except (PackError, FileNotFoundError, ValueError) as e:
        print(f"pack: {e}", file=sys.stderr)
        return 2
    for s, r in rep["splits"].items():
        print(f"{s}: {r['utterances']} utterances ({r['hours']:.2f} h, {r['bytes'] / 2**30:.2f} GiB int16) in "
              f"{r['shards']} shards; {r['skipped']} skipped")
    print(f"packed into {Path(args.out).resolve()} in {rep['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
