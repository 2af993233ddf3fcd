"""Embedding-extraction throughput: the real pipeline (files -> decode -> fbank -> encoder) and
the encoder alone, side by side in one run.

Writes ``--n`` WAV files (16 kHz, lengths uniform in ``--min-s``..``--max-s``, noise with a
random spectral tilt) in VoxCeleb layout to a temporary folder, reads them with
``read_voxceleb`` and runs ``extract_embeddings`` (``--chunk-s`` chunks, ``--batch``,
``--workers`` decoding processes) on ``--device``. Then it times the encoder alone on random
batches of the same chunk length already on the device. The ratio says whether extraction is
limited by decoding and the loader or by the network.

    python bench/embed_throughput.py --device cuda --n 3000 --presets ecapa_c512,ssrl_paper
    python bench/embed_throughput.py --device cpu --n 16 --presets tiny --batch 4   # seconds (tests)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ssrl_lab.data.readers import read_voxceleb
from ssrl_lab.eval.embed import extract_embeddings
from ssrl_lab.models import EncoderConfig, SpeakerNet

SR = 16000


def write_tree(root: Path, n: int, min_s: float, max_s: float, seed: int = 0) -> float:
    """``n`` WAV files under ``root/idXXXXX/vidYY/NNNNN.wav``; returns the total audio seconds."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(n):
        dur = float(rng.uniform(min_s, max_s))
        x = rng.normal(size=int(dur * SR)).astype(np.float32)
        x = np.cumsum(x) * float(rng.uniform(0.0, 0.05)) + x  # random tilt towards low frequencies
        x = 0.3 * x / max(float(np.abs(x).max()), 1e-6)
        d = root / f"id{i // 50:05d}" / f"vid{(i // 10) % 5:02d}"
        d.mkdir(parents=True, exist_ok=True)
        sf.write(d / f"{i:05d}.wav", x, SR, subtype="PCM_16")
        total += dur
    return total


def encoder_alone(net, device, batch: int, chunk_s: float, repeats: int) -> float:
    """Utterance-chunks per second through the encoder alone (inference mode, data on device)."""
    x = 0.1 * torch.randn(batch, int(chunk_s * SR), device=device)
    net.eval()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            net(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:  # two warm-up passes
                times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--min-s", type=float, default=4.0)
    ap.add_argument("--max-s", type=float, default=10.0)
    ap.add_argument("--presets", default="ecapa_c512,ssrl_paper")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--chunk-s", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--dir", default=None, help="where to write the files (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("embed_throughput: CUDA is not available")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        t = time.perf_counter()
        audio_s = write_tree(Path(tmp), args.n, args.min_s, args.max_s)
        table = read_voxceleb(tmp, cache=False)
        print(f"embed_throughput: {len(table)} files, {audio_s / 3600:.2f} h of audio written and read in "
              f"{time.perf_counter() - t:.1f} s; device {device}, batch {args.batch}, {args.chunk_s} s chunks, "
              f"{args.workers} loader workers", flush=True)
        for preset in args.presets.split(","):
            torch.manual_seed(0)
            net = SpeakerNet(EncoderConfig.preset(preset)).to(device)
            warm = table.subset(np.arange(min(len(table), 2 * args.batch)))
            extract_embeddings(net, warm, device=device, batch_size=args.batch, chunk_s=args.chunk_s,
                               progress=False)  # warm-up: kernels, workspace
            t = time.perf_counter()
            emb = extract_embeddings(net, table, device=device, batch_size=args.batch, chunk_s=args.chunk_s,
                                     progress=False, num_workers=args.workers)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - t
            if emb.shape[0] != len(table) or not np.isfinite(emb).all():
                sys.exit(f"embed_throughput: {preset}: bad embeddings {emb.shape}")
            # chunks the pipeline formed: every utterance cut into ceil(len / chunk) chunks
            n_chunks = int(sum(max(1, int(np.ceil(d / args.chunk_s))) for d in table.duration))
            alone = encoder_alone(net, device, args.batch, args.chunk_s, args.repeats)
            r = {"preset": preset, "utts": len(table), "seconds": wall, "utts_per_s": len(table) / wall,
                 "audio_s_per_s": audio_s / wall, "chunks": n_chunks, "pipeline_chunks_per_s": n_chunks / wall,
                 "encoder_chunks_per_s": alone}
            r["pipeline_over_encoder"] = r["pipeline_chunks_per_s"] / alone
            rows.append(r)
            print(f"  {preset}: {r['utts_per_s']:.0f} utt/s ({r['audio_s_per_s']:.0f} s of audio per s) through the "
                  f"pipeline; encoder alone {alone:.0f} chunks/s; pipeline at {100 * r['pipeline_over_encoder']:.0f} % "
                  f"of the encoder's rate", flush=True)
            del net
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "args": vars(args), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
