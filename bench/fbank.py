"""Batched log-Mel features against torchaudio's per-file Kaldi fbank, side by side in one run.

The trainers compute features inside the model, on the training device, for a whole batch at
once (``ssrl_lab.features.Fbank``). The usual alternative is ``torchaudio.compliance.kaldi.fbank``
called once per utterance in the data loader. This prints both timings on the same random
waveforms and their ratio, plus how closely the two agree after mean normalisation.

    .venv/bin/python bench/fbank.py [--batch 64] [--seconds 2.0] [--repeats 5] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch
import torchaudio

from ssrl_lab.features import Fbank


def _time(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    n = int(args.seconds * 16000)
    wave = (0.1 * torch.randn(args.batch, n)).to(args.device)
    fbank = Fbank().to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def batched():
        with torch.inference_mode():
            return fbank(wave)

    def per_file():
        out = []
        for w in wave.cpu():
            f = torchaudio.compliance.kaldi.fbank(w[None] * 32768, num_mel_bins=80, sample_frequency=16000, dither=0.0)
            out.append(f - f.mean(0, keepdim=True))
        return torch.stack(out)

    t_batched = _time(batched, args.repeats, sync)
    t_file = _time(per_file, args.repeats, lambda: None)
    a = batched().cpu()
    b = per_file().transpose(1, 2)
    frames = min(a.shape[-1], b.shape[-1])
    diff = (a[..., :frames] - b[..., :frames]).abs().mean().item()
    result = {
        "batch": args.batch,
        "seconds_per_utt": args.seconds,
        "device": args.device,
        "batched_ms": 1000 * t_batched,
        "per_file_kaldi_ms": 1000 * t_file,
        "speedup": t_file / t_batched,
        "mean_abs_diff": diff,
    }
    print(f"fbank on {args.batch} x {args.seconds:.1f} s ({args.device}, best of {args.repeats}):")
    print(f"  ssrl_lab Fbank, batched     : {result['batched_ms']:8.1f} ms")
    print(f"  torchaudio kaldi, per file  : {result['per_file_kaldi_ms']:8.1f} ms (CPU)")
    print(f"  ratio per-file / batched    : {result['speedup']:8.2f} x")
    print(f"  mean |difference| (log-Mel) : {diff:.4f}")
    return result


if __name__ == "__main__":
    main()
