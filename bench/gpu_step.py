"""Paper-size training steps on one GPU: step time, throughput, teacher share, peak memory.

The two methods' steps are the ones ``bench/scale_estimate.py`` counts FLOPs for (``DINOMethod``:
SpeakerNet ``ssrl_paper`` + DINO head with 65,536 prototypes, 2 x 4 s global + 4 x 2 s local crops,
teacher on the global crops, SGD; ``SSRLMethod``: ``ssrl_paper`` + AAM-softmax over K = 8,000,
student 2 s, EMA teacher 6 s, Adam), on random waveforms already on the device (no data loading:
that is measured per CPU core by scale_estimate.py). Each step runs under bf16 autocast (as the
trainers do with ``amp="bf16"``); the log-Mel front end stays in float32.

For every (method, per-GPU batch): median of ``--steps`` timed steps after ``--warmup`` (CUDA
events), utterances per second, the teacher's forward pass as a share of the step (timed alone
at the same batch), peak allocated memory, and achieved TFLOP/s (FLOPs counted by
FlopCounterMode at a batch of 2, linear in the batch). A batch that does not fit prints ``OOM``.
The epoch column is the compute time of one VoxCeleb2-dev epoch (1,092,009 utterances) on one
GPU at that per-GPU batch (data loading and the epoch end excluded).

    python bench/gpu_step.py                                   # on CUDA
    python bench/gpu_step.py --device cpu --encoder tiny --dino-batches 2 --ssrl-batches 2 \\
        --n-prototypes 256 --k 32 --steps 1 --warmup 1         # seconds, CPU (tests)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_estimate import VOX2_DEV_UTTS, DINOMethod, SSRLMethod, count_flops  # noqa: E402


class Timer:
    """Wall time of ``fn()`` in seconds: CUDA events on a GPU, the host clock on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t


def to_device(m, device: torch.device) -> None:
    """Move the method's models to ``device``; ``.to()`` moves parameters in place, so the optimiser
    (no state yet: FLOPs were counted without a step) keeps working on them."""
    m.student.to(device)
    m.teacher.to(device)
    if hasattr(m, "loss"):
        m.loss.to(device)


def batch_to(batch: dict, device: torch.device) -> dict:
    return {k: ([t.to(device) for t in v] if isinstance(v, list) else v.to(device)) for k, v in batch.items()}


def teacher_forward(m, batch: dict) -> None:
    with torch.no_grad():
        if m.name == "DINO":
            m.teacher(batch["views"][: m.cfg.n_global])
        else:
            m.teacher.head(m.teacher.backbone(batch["teacher"]).float(), batch["label"])


def measure(m, b: int, device: torch.device, amp: bool, steps: int, warmup: int, flops_per_sample: float) -> dict:
    timer = Timer(device)
    batch = batch_to(m.inputs(b), device)
    ctx = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if amp else None

    def run(fn):
        if ctx is None:
            return fn()
        with ctx():
            return fn()

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for _ in range(warmup):
            run(lambda: m.step(batch))
        times = [timer(lambda: run(lambda: m.step(batch))) for _ in range(steps)]
        t_times = [timer(lambda: run(lambda: teacher_forward(m, batch))) for _ in range(steps)]
    except torch.OutOfMemoryError:
        del batch
        m.opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"method": m.name, "batch": b, "oom": True}
    step = statistics.median(times)
    teacher = statistics.median(t_times)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")
    return {"method": m.name, "batch": b, "oom": False, "step_s": step, "utts_per_s": b / step,
            "teacher_s": teacher, "teacher_share": teacher / step, "peak_gib": peak / 2**30,
            "tflops": flops_per_sample * b / step / 1e12,
            "epoch_min_1gpu": VOX2_DEV_UTTS / b * step / 60.0}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--encoder", default="ssrl_paper")
    ap.add_argument("--n-prototypes", type=int, default=65536)
    ap.add_argument("--k", type=int, default=8000)
    ap.add_argument("--dino-batches", default="30,120,240", help="per-GPU batches (paper: 240 over 8 GPUs = 30)")
    ap.add_argument("--ssrl-batches", default="60,240,480", help="per-GPU batches (paper: 480 over 8 GPUs = 60)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--amp", choices=("bf16", "off"), default="bf16")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the encoders in place, as the trainers' compile=true (raise --warmup: "
                         "the first steps compile)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_step: CUDA is not available")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu_step: {name}, torch {torch.__version__}, encoder {args.encoder}, amp {args.amp}, "
          f"cudnn.benchmark {args.cudnn_benchmark}, compile {args.compile}")
    rows = []
    plans = ((lambda: DINOMethod(args.encoder, args.n_prototypes), args.dino_batches),
             (lambda: SSRLMethod(args.encoder, args.k), args.ssrl_batches))
    for make, batches in plans:
        if not batches.strip(","):
            continue
        m = make()
        fb = m.inputs(2)
        flops = count_flops(lambda m=m, fb=fb: m.forward(fb).backward()) / 2  # FLOPs are the same on every device
        m.student.zero_grad(set_to_none=True)
        to_device(m, device)
        if args.compile:
            from types import SimpleNamespace

            from ssrl_lab.train.wrap import compile_encoders

            compile_encoders(SimpleNamespace(compile=True), m.student, m.teacher)
        for b in (int(x) for x in batches.split(",") if x):
            r = measure(m, b, device, args.amp == "bf16", args.steps, args.warmup, flops)
            r["gflop_per_utt"] = flops / 1e9
            rows.append(r)
            if r["oom"]:
                print(f"  {m.name} batch {b}: OOM", flush=True)
            else:
                print(f"  {m.name} batch {b}: {r['step_s'] * 1000:.0f} ms/step, {r['utts_per_s']:.0f} utt/s, "
                      f"teacher {100 * r['teacher_share']:.0f} %, peak {r['peak_gib']:.1f} GiB, "
                      f"{r['tflops']:.0f} TFLOP/s", flush=True)
        del m
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\n{'method':6s} {'batch':>5s} {'ms/step':>8s} {'utt/s':>7s} {'teacher':>7s} {'peak GiB':>8s} "
          f"{'TFLOP/s':>7s} {'GFLOP/utt':>9s} {'epoch, 1 GPU':>12s}")
    for r in rows:
        if r["oom"]:
            print(f"{r['method']:6s} {r['batch']:5d}      OOM")
            continue
        print(f"{r['method']:6s} {r['batch']:5d} {1000 * r['step_s']:8.0f} {r['utts_per_s']:7.0f} "
              f"{100 * r['teacher_share']:6.0f}% {r['peak_gib']:8.1f} {r['tflops']:7.1f} {r['gflop_per_utt']:9.1f} "
              f"{r['epoch_min_1gpu']:10.1f} m")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "args": vars(args), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
