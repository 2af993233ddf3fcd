"""Paper-scale (VoxCeleb2-dev) time and memory per epoch on 1 and 8 GPUs, estimated on a CPU.

What is MEASURED here (on this machine, usually with one thread):
* FLOPs per training sample of the paper models (``torch.utils.flop_counter.FlopCounterMode``
  around one real forward + backward at a small batch; FLOPs are linear in the batch):
  DINO (``DINOConfig.profile("vox")``: SpeakerNet ``ssrl_paper`` + DINO head, 65,536
  prototypes, 2 x 4 s global + 4 x 2 s local crops, teacher on the global crops) and SSRL
  (``ssrl_paper`` SpeakerNet + AAM-softmax over 8,000 clusters, student 2 s, EMA teacher 6 s).
* Activation memory per sample: bytes of the tensors autograd saves for backward (distinct
  storages, parameters excluded), in fp32; the bf16-autocast ratio is measured on a short crop
  with CPU autocast (CPU and CUDA autocast op lists differ slightly).
* CPU step time at that small batch (forward, backward, optimiser and EMA update).
* Data-loading rate per CPU core: our datasets (``MultiCropDataset`` / ``PairCropDataset`` with the
  default augmentation, files decoded from disk, no preload) on ``data/synthvox-demo`` when present,
  else on generated FLAC files; the AAC/m4a decode cost relative to FLAC when PyAV can encode AAC.
* Spherical k-means (faiss CPU) at a small N x K x d, as FLOP/s, extrapolated to K = 8,000 over
  1,092,009 x 512.

Taken as arguments (printed with the results): the GPU's sustained bf16 throughput on these conv
nets (``--gpu-tflops``, default 80 TFLOP/s as measured on one H100 by ``bench/gpu_step.py``; about
8 % of its dense bf16 peak), the GPU's k-means throughput (``--gpu-kmeans-tflops``, default 10 as
measured for the torch backend), and ASSUMED: GPU memory, loader workers per GPU, the gradient
all-reduce bandwidth, VoxCeleb2's mean duration, and the CPU epoch-end figure. No GPU is used
here; ``bench/gpu_check.sh`` measures the GPU side (bench/RESULTS.md).

    OMP_NUM_THREADS=1 .venv/bin/python bench/scale_estimate.py                  # paper models
    .venv/bin/python bench/scale_estimate.py --encoder tiny --n-prototypes 1024 --k 64 \\
        --loader-items 4 --kmeans-n 2000 --kmeans-k 16 --repeats 1             # seconds (tests)
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssrl_lab.train.ema import ema_update

VOX2_DEV_UTTS = 1_092_009
VOX2_MEAN_DUR_S = 7.79  # assumed: 2,442 h / 1,128,246 utterances (VoxCeleb2 dev + test)
GiB = 1024 ** 3
# whole-file decodes per item: the datasets decode an utterance once and cut every crop from it
N_READS = {"DINO": 1, "SSRL": 1}


# -- measuring helpers ------------------------------------------------------------------------
def count_flops(fn) -> int:
    """Total FLOPs counted by FlopCounterMode while ``fn()`` runs (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    with mode:
        fn()
    return int(mode.get_total_flops())


def saved_bytes(fn, exclude: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs.

    Storages of the tensors in ``exclude`` (parameters) are not counted. This is the activation
    memory a training step holds at its peak (before backward frees it), without allocator slack.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr not in skip:
                seen[ptr] = max(seen.get(ptr, 0), st.nbytes())
        except (RuntimeError, NotImplementedError):  # e.g. tensors without storage
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return int(sum(seen.values()))


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- the two methods' training steps ------------------------------------------------------------
class Method:
    """One method's models and step: ``forward(batch) -> loss``, ``step(batch)`` (with optimiser)."""

    name: str
    batch_size: int
    optim_states: int  # fp32 copies of the parameters the optimiser keeps (SGD momentum 1, Adam 2)

    def inputs(self, b: int, scale_s: float = 1.0) -> dict:
        raise NotImplementedError

    def forward(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def step(self, batch: dict) -> None:
        loss = self.forward(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        ema_update(self.teacher, self.student, 0.999)  # the trainers' EMA (parameters and BN statistics)

    def seconds_per_sample(self) -> float:
        raise NotImplementedError


class DINOMethod(Method):
    name = "DINO"
    optim_states = 1

    def __init__(self, encoder: str, n_prototypes: int) -> None:
        from ssrl_lab.train.dino import DINOConfig, DINOLoss, build_student

        self.cfg = DINOConfig.profile("vox")
        if encoder != "ssrl_paper" or n_prototypes != self.cfg.n_prototypes:
            from ssrl_lab.models import EncoderConfig

            self.cfg = self.cfg.replace(encoder=EncoderConfig.preset(encoder), n_prototypes=n_prototypes)
        self.batch_size = self.cfg.batch_size
        self.student = build_student(self.cfg)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.loss = DINOLoss(self.cfg.n_prototypes, self.cfg.student_temp, self.cfg.center_momentum)
        self.opt = torch.optim.SGD(self.student.parameters(), lr=1e-3, momentum=0.9)
        self.student.train()
        self.teacher.train()

    def crops_s(self) -> list[float]:
        return [self.cfg.global_s] * self.cfg.n_global + [self.cfg.local_s] * self.cfg.n_local

    def inputs(self, b: int, scale_s: float = 1.0) -> dict:
        g = torch.Generator().manual_seed(0)
        return {"views": [0.1 * torch.randn(b, int(s * scale_s * 16000), generator=g) for s in self.crops_s()]}

    def forward(self, batch: dict) -> torch.Tensor:
        views = batch["views"]
        with torch.no_grad():
            t_out = self.teacher(views[: self.cfg.n_global])
        s_out = self.student(views)
        out = self.loss(s_out, t_out, self.cfg.teacher_temp)
        self.loss.update_center(t_out)
        return out

    def seconds_per_sample(self) -> float:
        return sum(self.crops_s())


class SSRLMethod(Method):
    name = "SSRL"
    optim_states = 2

    def __init__(self, encoder: str, k: int) -> None:
        from ssrl_lab.models import EncoderConfig, SpeakerNet
        from ssrl_lab.train.classifier import ClassifierModel
        from ssrl_lab.train.ssrl import SSRLConfig

        self.cfg = SSRLConfig.profile("vox", dino_run="unused")
        self.k = k
        self.batch_size = self.cfg.batch_size
        self.student = ClassifierModel(SpeakerNet(EncoderConfig.preset(encoder)), k, self.cfg.aam_scale,
                                       self.cfg.aam_margin)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.opt = torch.optim.Adam(self.student.parameters(), lr=1e-4, weight_decay=self.cfg.weight_decay)
        self.student.train()
        self.teacher.eval()

    def inputs(self, b: int, scale_s: float = 1.0) -> dict:
        g = torch.Generator().manual_seed(0)
        return {"student": 0.1 * torch.randn(b, int(self.cfg.student_s * scale_s * 16000), generator=g),
                "teacher": 0.1 * torch.randn(b, int(self.cfg.teacher_s * scale_s * 16000), generator=g),
                "label": torch.randint(0, self.k, (b,), generator=g)}

    def forward(self, batch: dict) -> torch.Tensor:
        y = batch["label"]
        with torch.no_grad():  # the teacher's self label and per-utterance loss (the p_clean input)
            logits_t = self.teacher.head(self.teacher.backbone(batch["teacher"]).float(), y)
            self_label = logits_t.argmax(-1)
            t_loss = F.cross_entropy(logits_t, self_label, reduction="none")
        w = torch.exp(-t_loss)  # stands in for p_clean
        ce = F.cross_entropy(self.student(batch["student"], y).float(), y, reduction="none")
        return (w * ce).sum() / w.sum().clamp_min(1e-8)

    def seconds_per_sample(self) -> float:
        return self.cfg.student_s + self.cfg.teacher_s


def measure_method(m: Method, b: int, repeats: int, bf16_scale_s: float) -> dict:
    """FLOPs / sample (train step and teacher-free forward), activations / sample, CPU step time."""
    params = list(m.student.parameters())
    batch = m.inputs(b)

    def fwd_bwd():
        m.student.zero_grad(set_to_none=True)
        m.forward(batch).backward()

    flops = count_flops(fwd_bwd) / b
    act = saved_bytes(lambda: m.forward(batch), params) / b
    # bf16 autocast: how saved bytes grow with crop length under CPU autocast vs fp32 (two crop
    # lengths, so the constant bf16 copies of the weights drop out; those go to static memory)
    sizes = {}
    for scale in (bf16_scale_s, 2 * bf16_scale_s):
        small = m.inputs(2, scale)
        a32 = saved_bytes(lambda: m.forward(small), params)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a16 = saved_bytes(lambda: m.forward(small), params)
        sizes[scale] = (a32, a16)
    (a32_1, a16_1), (a32_2, a16_2) = sizes.values()
    ratio = (a16_2 - a16_1) / max(a32_2 - a32_1, 1)
    step_s = best_time(lambda: m.step(batch), repeats)
    p = n_params(m.student)
    return {"method": m.name, "batch_measured": b, "params": p, "flops_per_sample": flops,
            "act_bytes_per_sample_fp32": act, "bf16_act_ratio": ratio,
            "cpu_step_s": step_s, "cpu_s_per_sample": step_s / b,
            "cpu_gflops": flops * b / step_s / 1e9, "paper_batch": m.batch_size, "optim_states": m.optim_states,
            "audio_s_per_sample": m.seconds_per_sample()}


def forward_flops_per_audio_second(encoder: str) -> float:
    """Inference FLOPs of one second of audio through the SpeakerNet (embedding extraction)."""
    from ssrl_lab.models import EncoderConfig, SpeakerNet

    net = SpeakerNet(EncoderConfig.preset(encoder)).eval()
    x = 0.1 * torch.randn(1, 4 * 16000)
    with torch.inference_mode():
        return count_flops(lambda: net(x)) / 4.0


# -- data loading -------------------------------------------------------------------------------
def _table(corpus: str | None, tmp: Path):
    """The demo corpus's training table, or 16 generated 8-s FLAC files."""
    from ssrl_lab.data.table import UtteranceTable

    if corpus and (Path(corpus) / "train.tsv").is_file():
        return UtteranceTable.load(Path(corpus) / "train.tsv"), f"{corpus} (FLAC)"
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        t = np.arange(8 * 16000) / 16000
        wave = (0.3 * np.sin(2 * np.pi * (120 + 10 * i) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        p = tmp / f"u{i:03d}.flac"
        sf.write(p, wave, 16000)
        rows.append((f"u{i:03d}.flac", f"s{i % 4}", f"s{i % 4}/a", str(p), 8.0))
    return UtteranceTable.from_rows(rows), "generated 8-s FLAC files"


def _aac_ratio(path: str, tmp: Path, repeats: int = 3) -> dict | None:
    """Seconds to read a 4-s crop from FLAC and from AAC (m4a, as VoxCeleb2 ships) of one file."""
    try:
        from ssrl_lab.data.audio import load_audio, write_m4a

        wave = load_audio(path)
        out = write_m4a(tmp / "probe.m4a", wave)
        dur = min(4.0, len(wave) / 16000 - 0.5)
        t_flac = best_time(lambda: load_audio(path, start_s=0.2, dur_s=dur), repeats)
        t_aac = best_time(lambda: load_audio(str(out), start_s=0.2, dur_s=dur), repeats)
        return {"flac_crop_s": t_flac, "aac_crop_s": t_aac, "crop_dur_s": dur}
    except Exception as e:  # noqa: BLE001 - optional probe: AAC encoder or container may be missing
        print(f"  (AAC decode probe skipped: {type(e).__name__}: {e})")
        return None


def measure_loading(corpus: str | None, items: int) -> dict:
    """Items per second per core of the DINO and SSRL datasets (decode + crop + augment)."""
    from ssrl_lab.data.augment import AugmentConfig, Augmenter
    from ssrl_lab.data.datasets import MultiCropDataset, PairCropDataset
    from ssrl_lab.train.ssrl import SSRLConfig

    with tempfile.TemporaryDirectory() as d:
        table, source = _table(corpus, Path(d))
        aug = Augmenter(AugmentConfig.from_dict(SSRLConfig.profile("vox", dino_run="x").augment), babble_table=table,
                        seed=0)
        dsets = {"DINO": MultiCropDataset(table, 2, 4.0, 4, 2.0, aug, seed=0),
                 "SSRL": PairCropDataset(table, 2.0, 6.0, aug, seed=0)}
        rng = np.random.default_rng(1)
        idx = rng.choice(len(table), size=min(items, len(table)), replace=False)
        out = {"source": source, "items": int(len(idx))}
        for name, ds in dsets.items():
            ds[int(idx[0])]  # warm-up (builds the augmentation banks)
            t0 = time.perf_counter()
            for i in idx:
                ds[int(i)]
            out[name] = len(idx) / (time.perf_counter() - t0)
        out["crop_read"] = _aac_ratio(table.path[int(idx[0])], Path(d))
        out["aac_over_flac"] = (out["crop_read"]["aac_crop_s"] / out["crop_read"]["flac_crop_s"]
                                if out["crop_read"] else None)
    return out


# -- k-means -----------------------------------------------------------------------------------
def measure_kmeans(n: int, k: int, d: int, iters: int) -> dict:
    from ssrl_lab.cluster import spherical_kmeans

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((max(k, 2), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, d)).astype(np.float32)
    t0 = time.perf_counter()
    spherical_kmeans(x, k, n_iter=iters, seed=0, backend="faiss")
    dt = time.perf_counter() - t0
    flops = 2.0 * n * k * d * iters
    return {"n": n, "k": k, "d": d, "iters": iters, "seconds": dt, "gflops": flops / dt / 1e9}


# -- the estimate -------------------------------------------------------------------------------
def estimate(meas: dict, load: dict, km: dict, args) -> dict:
    n = args.utts
    out = {}
    for name in ("DINO", "SSRL"):
        m = meas[name]
        B = m["paper_batch"]
        steps = n // B
        rate = load[name]
        if args.aac and load["crop_read"]:
            cr = load["crop_read"]
            # the extra AAC decode time of the probe crop, scaled to a whole file of the mean length
            extra = (cr["aac_crop_s"] - cr["flac_crop_s"]) * args.mean_dur_s / cr["crop_dur_s"]
            rate = 1.0 / (1.0 / rate + N_READS[name] * max(extra, 0.0))
        rows = []
        for g in args.gpus:
            per = B / g
            compute = steps * m["flops_per_sample"] * per / (args.gpu_tflops * 1e12)
            p_bytes = 4 * m["params"]
            comm = steps * (2 * (g - 1) / g * p_bytes / (args.allreduce_gbps * 1e9)) if g > 1 else 0.0
            loading = n / (rate * args.workers_per_gpu * g)
            end = args.epoch_end_s if name == "SSRL" else 0.0
            total = max(compute + comm, loading) + end
            act = m["act_bytes_per_sample_fp32"] * m["bf16_act_ratio"] * per
            # student weights + grads + optimiser states + EMA teacher in fp32, and the bf16 weight
            # copies autocast makes for the forward passes (student and teacher)
            static = p_bytes * (2 + m["optim_states"] + 1) + 2 * 2 * m["params"]
            mem = act + static
            limit = "compute" if compute + comm >= loading else "data loading"
            if mem > args.gpu_mem_gib * GiB:
                limit += f"; memory: {mem / GiB:.0f} GiB > {args.gpu_mem_gib:.0f} GiB (needs gradient accumulation)"
            rows.append({"gpus": g, "batch_per_gpu": per, "steps": steps, "compute_s": compute, "allreduce_s": comm,
                         "loading_s": loading, "epoch_end_s": end, "epoch_s": total, "act_gib": act / GiB,
                         "static_gib": static / GiB, "mem_gib": mem / GiB, "limit": limit})
        out[name] = rows
    # k-means and the embedding pass that precedes it (SSRL start, every iterative round)
    km_flops = 2.0 * n * args.k * args.emb_dim * args.kmeans_iters
    out["kmeans"] = {"flops": km_flops, "cpu_1core_s": km_flops / (km["gflops"] * 1e9),
                     "cpu_server_s": km_flops / (km["gflops"] * 1e9 * args.server_cores),
                     "gpu_s": km_flops / (args.gpu_kmeans_tflops * 1e12)}
    audio_s = n * min(args.mean_dur_s, 20.0)
    emb_rows = []
    for g in args.gpus:
        compute = audio_s * meas["fwd_flops_per_audio_s"] / (args.gpu_tflops * 1e12 * g)
        decode = n / (load["decode_utts_per_s"] * args.workers_per_gpu * g)
        emb_rows.append({"gpus": g, "compute_s": compute, "decode_s": decode, "seconds": max(compute, decode)})
    out["embed"] = emb_rows
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="ssrl_paper", help="encoder preset measured (paper: ssrl_paper)")
    ap.add_argument("--n-prototypes", type=int, default=65536, help="DINO prototypes (paper 65,536)")
    ap.add_argument("--k", type=int, default=8000, help="SSRL clusters / k-means K (paper 8,000)")
    ap.add_argument("--emb-dim", type=int, default=512, help="embedding dimension clustered (ssrl_paper: 512)")
    ap.add_argument("--batch", type=int, default=2, help="batch measured on the CPU (>= 2: the DINO head has BN)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--bf16-crop-scale", type=float, default=0.25,
                    help="crop lengths x this for the bf16/fp32 activation-ratio probe")
    ap.add_argument("--corpus", default="data/synthvox-demo")
    ap.add_argument("--loader-items", type=int, default=40)
    ap.add_argument("--kmeans-n", type=int, default=20000)
    ap.add_argument("--kmeans-k", type=int, default=200)
    ap.add_argument("--kmeans-d", type=int, default=512)
    ap.add_argument("--kmeans-iters-measured", type=int, default=5)
    ap.add_argument("--kmeans-iters", type=int, default=20, help="iterations at paper scale (SSRLConfig.kmeans_iter)")
    ap.add_argument("--utts", type=int, default=VOX2_DEV_UTTS)
    ap.add_argument("--mean-dur-s", type=float, default=VOX2_MEAN_DUR_S, help="assumed mean utterance length")
    ap.add_argument("--gpus", default="1,8")
    ap.add_argument("--gpu-tflops", type=float, default=80.0,
                    help="sustained bf16 TFLOP/s per GPU (80: MEASURED for these steps on one H100 at large "
                         "batches, bench/gpu_step.py)")
    ap.add_argument("--gpu-kmeans-tflops", type=float, default=10.0,
                    help="k-means TFLOP/s on one GPU (10: MEASURED for our torch backend on one H100, fp32)")
    ap.add_argument("--gpu-mem-gib", type=float, default=80.0, help="ASSUMED memory per GPU (H100: 80)")
    ap.add_argument("--workers-per-gpu", type=int, default=8, help="ASSUMED loader cores per GPU (vox profiles: 8)")
    ap.add_argument("--server-cores", type=int, default=32, help="ASSUMED cores for CPU k-means on the server")
    ap.add_argument("--allreduce-gbps", type=float, default=100.0,
                    help="ASSUMED effective gradient all-reduce bandwidth, GB/s (NVLink; not overlapped)")
    ap.add_argument("--epoch-end-s", type=float, default=6.7,
                    help="SSRL epoch-end seconds (MEASURED earlier on the CPU for N=1M, K=8000; an upper bound)")
    ap.add_argument("--aac", action="store_true",
                    help="VoxCeleb2 read as shipped (m4a): add the measured extra AAC decode time per crop read "
                         "(default: the corpus converted to FLAC/WAV, as most recipes do)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write everything measured and estimated here")
    args = ap.parse_args(argv)
    args.gpus = [int(g) for g in args.gpus.split(",")]
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    torch.manual_seed(0)
    t_start = time.perf_counter()
    print(f"scale estimate: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}; encoder {args.encoder}")

    meas = {}
    for m in (DINOMethod(args.encoder, args.n_prototypes), SSRLMethod(args.encoder, args.k)):
        r = measure_method(m, args.batch, args.repeats, args.bf16_crop_scale)
        meas[m.name] = r
        print(f"[measured] {m.name}: {r['params'] / 1e6:.1f} M params, {r['flops_per_sample'] / 1e9:.1f} GFLOP per "
              f"sample per step ({r['audio_s_per_sample']:.0f} s of audio), activations {r['act_bytes_per_sample_fp32'] / 2**20:.0f}"
              f" MiB/sample fp32 (bf16/fp32 {r['bf16_act_ratio']:.2f}), CPU step at batch {args.batch}: "
              f"{r['cpu_step_s']:.2f} s ({r['cpu_gflops']:.0f} GFLOP/s)")
        del m
    meas["fwd_flops_per_audio_s"] = forward_flops_per_audio_second(args.encoder)
    print(f"[measured] embedding forward: {meas['fwd_flops_per_audio_s'] / 1e9:.2f} GFLOP per second of audio")

    load = measure_loading(args.corpus, args.loader_items)
    from ssrl_lab.data.audio import load_audio
    from ssrl_lab.data.table import UtteranceTable  # noqa: F401
    with tempfile.TemporaryDirectory() as d:
        table, _ = _table(args.corpus, Path(d))
        paths = table.path[: max(args.loader_items, 1)]
        t0 = time.perf_counter()
        for p in paths:
            load_audio(p)
        load["decode_utts_per_s"] = len(paths) / (time.perf_counter() - t0)
        if args.aac and load["aac_over_flac"]:  # whole files: the decode itself is the cost
            load["decode_utts_per_s"] /= load["aac_over_flac"]
    aac = (f"; a 4-s crop read: FLAC {1000 * load['crop_read']['flac_crop_s']:.1f} ms, AAC/m4a "
           f"{1000 * load['crop_read']['aac_crop_s']:.1f} ms" if load["crop_read"] else "")
    print(f"[measured] loader on {load['source']}, {load['items']} items, one core: DINO {load['DINO']:.1f} items/s "
          f"(6 crops, each augmented), SSRL {load['SSRL']:.1f} items/s (2 crops, 1 augmented){aac}")

    km = measure_kmeans(args.kmeans_n, args.kmeans_k, args.kmeans_d, args.kmeans_iters_measured)
    print(f"[measured] faiss k-means {km['n']:,} x {km['d']} K={km['k']} {km['iters']} it: {km['seconds']:.2f} s "
          f"= {km['gflops']:.0f} GFLOP/s on {args.threads} thread(s)")

    est = estimate(meas, load, km, args)
    print(f"\n[GPU rates: measured on one H100 unless overridden] {args.gpu_tflops:.0f} TFLOP/s bf16 sustained; "
          f"[assumed] {args.gpu_mem_gib:.0f} GiB, "
          f"{args.workers_per_gpu} loader cores/GPU (each as fast as this machine's), all-reduce "
          f"{args.allreduce_gbps:.0f} GB/s, SSRL epoch end {args.epoch_end_s} s; {args.utts:,} utterances"
          + (" (audio as m4a: measured AAC decode cost added)" if args.aac and load["crop_read"]
             else " (audio as FLAC/WAV)"))
    print(f"{'method':6s} {'GPUs':>4s} {'batch/GPU':>9s} {'compute':>9s} {'allred.':>8s} {'loading':>9s} "
          f"{'epoch':>9s} {'mem/GPU':>8s}  limit")
    for name in ("DINO", "SSRL"):
        for r in est[name]:
            print(f"{name:6s} {r['gpus']:4d} {r['batch_per_gpu']:9.0f} {r['compute_s'] / 60:8.1f}m "
                  f"{r['allreduce_s'] / 60:7.1f}m {r['loading_s'] / 60:8.1f}m {r['epoch_s'] / 60:8.1f}m "
                  f"{r['mem_gib']:7.1f}G  {r['limit']}")
    k = est["kmeans"]
    print(f"k-means K={args.k} over {args.utts:,} x {args.emb_dim}, {args.kmeans_iters} it "
          f"({k['flops'] / 1e12:.0f} TFLOP): this CPU 1 core {k['cpu_1core_s'] / 3600:.1f} h, "
          f"{args.server_cores} server cores {k['cpu_server_s'] / 60:.1f} min (assumed linear), "
          f"one GPU {k['gpu_s']:.0f} s (at {args.gpu_kmeans_tflops:.0f} TFLOP/s)")
    for r in est["embed"]:
        print(f"embedding pass over the training set, {r['gpus']} GPU(s): compute {r['compute_s'] / 60:.1f} min, "
              f"decode {r['decode_s'] / 60:.1f} min -> {r['seconds'] / 60:.1f} min")
    print(f"(measured in {time.perf_counter() - t_start:.0f} s; GPU rates are arguments: measured on one H100 by "
          f"default, see bench/RESULTS.md)")
    result = {"args": {k: v for k, v in vars(args).items()}, "measured": meas, "loading": load, "kmeans": km,
              "estimate": est}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
