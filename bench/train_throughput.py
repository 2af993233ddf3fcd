"""Training throughput of the real trainers (loader, augmentation, steps, epoch end) on one device.

``bench/gpu_step.py`` times the paper models' steps on tensors already on the GPU; this script
runs the trainers themselves (``ssrl_lab.train.dino`` then ``ssrl_lab.train.ssrl``, their ``vox``
profiles with the overrides below) on a generated VoxCeleb-layout corpus, so the figures include
decoding, cropping and augmentation in ``--workers`` loader processes, host-to-device copies,
per-step bookkeeping, and for SSRL the embedding pass, k-means and the epoch-end label update.

The audio is noise with a per-speaker spectral tilt and pitch-like ripple (so that k-means has
something to find), lengths uniform in 4..10 s, written once as 16-bit WAV. Labels and EERs are
meaningless here; only the timings are reported.

    python bench/train_throughput.py --device cuda                         # paper encoder, GPU
    python bench/train_throughput.py --device cpu --encoder micro --speakers 6 --utts 6 --dino-batch 4 \\
        --ssrl-batch 4 --k 6 --steps 2 --workers 0 --prototypes 64             # seconds (tests)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def write_corpus(root: Path, speakers: int, utts: int, seed: int = 0) -> dict:
    """``train/`` and ``test/`` VoxCeleb trees, ``trials.txt`` and ``corpus.json`` under ``root``."""
    from ssrl_lab.data.corpus import write_corpus_json

    rng = np.random.default_rng(seed)
    audio_s = 0.0
    test_ids = []
    for split, n_spk, n_utt in (("train", speakers, utts), ("test", 4, 4)):
        for s in range(n_spk):
            tilt, f0 = rng.uniform(0.0, 0.08), rng.uniform(90.0, 260.0)
            for u in range(n_utt):
                dur = rng.uniform(4.0, 10.0)
                t = np.arange(int(dur * SR)) / SR
                x = rng.normal(size=t.size)
                x = np.cumsum(x) * tilt + x + 2.0 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 3 * t))
                x = (0.3 * x / np.abs(x).max()).astype(np.float32)
                rel = f"id{s:05d}/v{u % 3}/{u:05d}.wav"
                (root / split / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / split / rel, x, SR, subtype="PCM_16")
                audio_s += dur if split == "train" else 0.0
                if split == "test":
                    test_ids.append(rel)
    lines = []
    for i, a in enumerate(test_ids):
        for b in test_ids[i + 1:]:
            lines.append(f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}")
    (root / "trials.txt").write_text("\n".join(lines) + "\n")
    write_corpus_json(root, "throughput-noise", "train", "test", "trials.txt")
    return {"train_utts": speakers * utts, "train_hours": audio_s / 3600}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--encoder", default="ssrl_paper")
    ap.add_argument("--speakers", type=int, default=100)
    ap.add_argument("--utts", type=int, default=40, help="training utterances per speaker")
    ap.add_argument("--dino-batch", type=int, default=120)
    ap.add_argument("--ssrl-batch", type=int, default=240)
    ap.add_argument("--prototypes", type=int, default=65536)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--steps", type=int, default=30, help="steps per epoch (max_steps_per_epoch)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--augment-on", choices=("loader", "batch"), default="loader",
                    help="loader: the workers augment (the default); batch: on the device after the loader")
    ap.add_argument("--packed", action="store_true", help="pack the corpus (ssrl_lab.data.pack) and train from the shards")
    ap.add_argument("--compile", action="store_true", help="the trainers' compile=true")
    ap.add_argument("--dino-epochs", type=int, default=1, help="2 or more: the last epoch is timed without warm-up")
    ap.add_argument("--bare-json", default=None,
                    help="gpu_step.py --json output: print each trainer's utt/s as a share of the bare step at its batch")
    ap.add_argument("--dir", default=None, help="where to write the corpus and runs (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from ssrl_lab.models import EncoderConfig
    from ssrl_lab.train import dino, ssrl

    out = {"args": vars(args)}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        out["corpus"] = write_corpus(root / "corpus", args.speakers, args.utts)
        print(f"train_throughput: corpus of {out['corpus']['train_utts']} utterances "
              f"({out['corpus']['train_hours']:.2f} h) written in {time.perf_counter() - t:.1f} s", flush=True)
        corpus = root / "corpus"
        if args.packed:
            from ssrl_lab.data.pack import pack_corpus

            t = time.perf_counter()
            pack_corpus(corpus, root / "packed", workers=max(1, args.workers))
            corpus = root / "packed"
            print(f"train_throughput: packed in {time.perf_counter() - t:.1f} s", flush=True)
        common = dict(corpus=str(corpus), device=args.device, amp=args.amp, num_workers=args.workers,
                      max_steps_per_epoch=args.steps, eval_every=0, eval_batch_size=16, preload=False,
                      augment_on=args.augment_on, compile=args.compile)
        print(f"train_throughput: augment_on={args.augment_on}, {'packed shards' if args.packed else 'WAV files'}, "
              f"compile={args.compile}", flush=True)
        dcfg = dino.DINOConfig.profile("vox", run_dir=str(root / "dino"), encoder=EncoderConfig.preset(args.encoder),
                                       n_prototypes=args.prototypes, batch_size=args.dino_batch, epochs=args.dino_epochs,
                                       warmup_epochs=0.0, **common)
        t = time.perf_counter()
        dino.train(dcfg, progress=False)
        d_wall = time.perf_counter() - t
        drow = [json.loads(line) for line in (root / "dino" / "metrics.jsonl").read_text().splitlines()][-1]
        scfg = ssrl.SSRLConfig.profile("vox", run_dir=str(root / "ssrl"), dino_run=str(root / "dino"), k=args.k,
                                       batch_size=args.ssrl_batch, epochs=2, label_fixed_epochs=1,
                                       embed_max_len_s=10.0, **common)
        t = time.perf_counter()
        ssrl.train(scfg, progress=False)
        s_wall = time.perf_counter() - t
        rows = [json.loads(line) for line in (root / "ssrl" / "metrics.jsonl").read_text().splitlines()]
    km = next(r for r in rows if r["stage"] == "kmeans")
    ep = [r for r in rows if r["stage"] == "ssrl"]
    res = {
        "dino": {"batch": args.dino_batch, "steps": drow["steps"], "seconds_steps": drow["seconds_steps"],
                 "utts_per_s": drow["steps"] * args.dino_batch / drow["seconds_steps"], "wall_s": d_wall},
        "ssrl": {"batch": args.ssrl_batch, "wall_s": s_wall, "seconds_embed": km["seconds_embed"],
                 "seconds_kmeans": km["seconds_kmeans"],
                 "epochs": [{"epoch": r["epoch"], "steps": r["steps"], "seconds_steps": r["seconds_steps"],
                             "utts_per_s": r["steps"] * args.ssrl_batch / r["seconds_steps"],
                             "teacher_share": r["teacher_share"], "seconds_epoch_end": r["seconds_epoch_end"],
                             "updating_labels": r["updating_labels"]} for r in ep]},
    }
    out.update(res)
    d = res["dino"]
    print(f"DINO ({args.encoder}, batch {args.dino_batch}, {args.workers} workers): {d['steps']} steps in "
          f"{d['seconds_steps']:.1f} s = {d['utts_per_s']:.0f} utt/s "
          f"({'first epoch: warm-up included' if args.dino_epochs == 1 else f'epoch {args.dino_epochs}'})")
    s = res["ssrl"]
    print(f"SSRL: embedding pass {s['seconds_embed']:.1f} s, k-means K={args.k} {s['seconds_kmeans']:.2f} s")
    for e in s["epochs"]:
        print(f"SSRL epoch {e['epoch']} ({'labels updated' if e['updating_labels'] else 'labels fixed'}), batch "
              f"{args.ssrl_batch}: {e['steps']} steps in {e['seconds_steps']:.1f} s = {e['utts_per_s']:.0f} utt/s, "
              f"teacher {100 * e['teacher_share']:.0f} % of the step time, epoch end {e['seconds_epoch_end']:.2f} s")
    if args.bare_json and Path(args.bare_json).is_file():
        bare = {(r["method"], r["batch"]): r.get("utts_per_s") for r in json.loads(Path(args.bare_json).read_text())["rows"]
                if not r.get("oom")}
        shares = {"dino": (d["utts_per_s"], bare.get(("DINO", args.dino_batch))),
                  "ssrl": (s["epochs"][-1]["utts_per_s"], bare.get(("SSRL", args.ssrl_batch)))}
        out["share_of_bare_step"] = {}
        for name, (real, ref) in shares.items():
            if ref:
                out["share_of_bare_step"][name] = real / ref
                print(f"{name.upper()} real trainer {real:.0f} utt/s = {100 * real / ref:.0f} % of the bare step "
                      f"({ref:.0f} utt/s at the same batch)")
            else:
                print(f"{name.upper()}: no bare step at this batch in {args.bare_json}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
