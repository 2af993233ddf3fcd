"""Loader throughput per worker: FLAC files vs the packed format, loader-side vs in-batch augmentation.

    OMP_NUM_THREADS=1 python bench/loader.py [--corpus DIR] [--items 32] [--repeats 2] [--batch 32]

Everything runs in this one process on one thread, as one DataLoader worker would (a worker
is one process). For DINO items (the ``vox`` profile: 2 x 4 s + 4 x 2 s crops, each augmented)
and SSRL items (a 2-s augmented student crop and a clean 6-s teacher crop) it measures items per
second of the real datasets (:mod:`ssrl_lab.data.datasets`) in four ways, side by side:

* FLAC files or the packed format (:mod:`ssrl_lab.data.pack`, read through ``np.memmap``);
* loader-side augmentation (today: the worker augments every crop with the ``vox`` profile's
  :class:`Augmenter`, babble read from other utterances of the table) or in-batch augmentation
  (the worker only decodes and crops; :class:`BatchAugmenter` augments the batch afterwards).

It then times the in-batch augmentation of one batch of ``--batch`` items on this CPU (one
thread): on a GPU server it runs on the GPU, so this is its CPU upper bound. ``--corpus``: a
corpus directory (its training table is used); default: 32 generated 8-s FLAC files (16-bit,
16 kHz), as ``bench/scale_estimate.py`` uses. Ratios are to today's path (FLAC, loader-side).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def generated_corpus(d: Path, n: int = 32, seconds: float = 8.0) -> Path:
    """``n`` 8-s FLAC utterances (tone + noise, 4 speakers) as a minimal corpus directory."""
    import soundfile as sf

    from ssrl_lab.data.corpus import write_corpus_json
    from ssrl_lab.data.table import UtteranceTable

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        t = np.arange(int(seconds * 16000)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * (120 + 10 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
                + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        p = d / "wav" / f"s{i % 4}" / "a" / f"u{i:03d}.flac"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, wave, 16000, subtype="PCM_16")
        rows.append((f"s{i % 4}/a/u{i:03d}.flac", f"s{i % 4}", f"s{i % 4}/a", str(p), seconds))
    table = UtteranceTable.from_rows(rows)
    table.save(d / "train.tsv")
    table.save(d / "test.tsv")
    (d / "trials.txt").write_text(f"1 {rows[0][0]} {rows[4][0]}\n0 {rows[0][0]} {rows[1][0]}\n")
    write_corpus_json(d, "bench-loader", "train.tsv", "test.tsv")
    return d


def items_per_s(ds, idx, repeats: int) -> float:
    ds[int(idx[0])]  # warm-up: augmentation banks, memmaps
    best = float("inf")
    for r in range(repeats):
        ds.set_epoch(r + 1)
        t0 = time.perf_counter()
        for i in idx:
            ds[int(i)]
        best = min(best, time.perf_counter() - t0)
    return len(idx) / best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="items per batch for the in-batch augmentation timing")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from ssrl_lab.data.augment import AugmentConfig, Augmenter
    from ssrl_lab.data.batch_augment import BatchAugmenter, augment_batch_fn
    from ssrl_lab.data.corpus import open_corpus
    from ssrl_lab.data.datasets import MultiCropDataset, PairCropDataset
    from ssrl_lab.data.pack import pack_corpus
    from ssrl_lab.train.dino import DINOConfig
    from ssrl_lab.train.loader import collate
    from ssrl_lab.train.ssrl import SSRLConfig

    dino, ssrl = DINOConfig.profile("vox"), SSRLConfig.profile("vox", dino_run="x")
    aug_cfg = {"DINO": AugmentConfig.from_dict(dino.augment), "SSRL": AugmentConfig.from_dict(ssrl.augment)}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = Path(args.corpus) if args.corpus else generated_corpus(tmp / "corpus")
        t0 = time.perf_counter()
        pack_corpus(corpus, tmp / "packed", splits=["train"])
        t_pack = time.perf_counter() - t0
        tables = {"FLAC": open_corpus(corpus).train, "packed": open_corpus(tmp / "packed").train}
        n = len(tables["FLAC"])
        idx = np.random.default_rng(1).choice(n, size=min(args.items, n), replace=False)
        hours = float(np.nansum(tables["packed"].duration)) / 3600

        def dataset(method, table, aug):
            if method == "DINO":
                return MultiCropDataset(table, dino.n_global, dino.global_s, dino.n_local, dino.local_s, aug, seed=0)
            return PairCropDataset(table, ssrl.student_s, ssrl.teacher_s, aug, seed=0)

        res = {"corpus": str(args.corpus or "generated 8-s FLAC files"), "utterances": n, "items": len(idx),
               "pack_seconds": t_pack, "pack_hours": hours, "rates": {}, "batch_aug": {}}
        print(f"corpus: {res['corpus']}, {n} utterances; {len(idx)} items x best of {args.repeats}, one thread; "
              f"packed {hours * 3600:.0f} s of audio in {t_pack:.2f} s")
        print(f"{'method':6s} {'source':7s} {'augmentation':12s} {'items/s':>9s} {'x today':>8s}")
        for method in ("DINO", "SSRL"):
            rates = {}
            for source, table in tables.items():
                for where in ("loader", "in-batch"):
                    aug = Augmenter(aug_cfg[method], babble_table=table, seed=0).prepare() if where == "loader" else None
                    rates[(source, where)] = items_per_s(dataset(method, table, aug), idx, args.repeats)
            base = rates[("FLAC", "loader")]
            for (source, where), r in rates.items():
                print(f"{method:6s} {source:7s} {where:12s} {r:9.1f} {r / base:8.2f}")
                res["rates"][f"{method}/{source}/{where}"] = r

            # the in-batch augmentation of one batch on this CPU
            ds = dataset(method, tables["packed"], None)
            ds.set_epoch(1)
            batch = collate([ds[int(i) % n] for i in range(args.batch)])
            baug = BatchAugmenter(aug_cfg[method], babble_table=tables["packed"], seed=0, device="cpu").prepare()
            hook = augment_batch_fn(baug)
            hook(batch, 0)  # warm-up
            times = []
            for r in range(max(3, args.repeats)):
                t0 = time.perf_counter()
                hook(batch, r + 1)
                times.append(time.perf_counter() - t0)
            t = min(times)
            crops = len(batch["views"]) if "views" in batch else 1
            load_s = 1.0 / rates[("packed", "in-batch")]
            res["batch_aug"][method] = {"batch": args.batch, "crops_per_item": crops, "seconds_per_batch": t,
                                        "ms_per_item": 1e3 * t / args.batch,
                                        "cpu_items_per_s_packed_plus_aug": 1.0 / (load_s + t / args.batch)}
            print(f"{method:6s} in-batch augmentation on this CPU: {1e3 * t:.1f} ms per batch of {args.batch} "
                  f"({crops} augmented crop(s) per item; {1e3 * t / args.batch:.2f} ms per item). "
                  f"Packed + in-batch, both on one CPU core: {res['batch_aug'][method]['cpu_items_per_s_packed_plus_aug']:.1f} "
                  f"items/s ({res['batch_aug'][method]['cpu_items_per_s_packed_plus_aug'] / base:.2f}x today)")
    res["seconds"] = time.perf_counter() - t_start
    print(f"(measured in {res['seconds']:.0f} s; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
