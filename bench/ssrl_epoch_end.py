"""Time SSRL's epoch-end label update on synthetic labels and losses.

Stages timed: push + vote + agreement (LabelQueue), empty-cluster masking + change rate +
cluster count, the GMM fit on log-loss, the whole ``epoch_end_update`` (push, vote, agreement,
masking, change rate, cluster count, GMM) and the history append (not part of the update; it
includes the clean/noisy split quality against the true labels).

    .venv/bin/python bench/ssrl_epoch_end.py                # N = 1,000,000 (K 8000) and N = 4,800 (K 300)
    .venv/bin/python bench/ssrl_epoch_end.py --sizes 4800:300 --device cuda
    .venv/bin/python bench/ssrl_epoch_end.py --sizes 4800:500 --metrics outputs/demo/ssrl/metrics.jsonl

Share of an epoch: each size's whole epoch-end is also printed as a share of
``epoch-end + training epoch``. The training epoch's seconds come from ``--epoch-s`` (one per
size), from ``--metrics`` (median ``seconds_steps`` of an SSRL run's ``metrics.jsonl``, for the
first size) or, for sizes up to 20,000 utterances, from a measured demo step (the ``demo``
profile's models: tiny encoder, AAM over K, student 2 s + teacher 4 s, batch 64) times the
epoch's steps.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ssrl_lab.labels import (
    EpochHistory,
    LabelQueue,
    active_from_labels,
    epoch_end_update,
    fit_clean_posterior,
    label_change_rate,
    update_active,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic(n: int, k: int, n_speakers: int, device: torch.device, seed: int = 0):
    """k-means-like labels (15 % wrong), teacher relabels (10 % change), two-population losses."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randint(0, n_speakers, (n,), generator=g)
    seed_labels = true.clone()
    wrong = torch.rand(n, generator=g) < 0.15
    seed_labels[wrong] = torch.randint(0, k, (int(wrong.sum()),), generator=g)
    teacher = seed_labels.clone()
    move = torch.rand(n, generator=g) < 0.10
    teacher[move] = true[move]
    # log-loss: clean ~ N(-1.5, 0.7), noisy ~ N(1.8, 0.6) (nats, AAM s=32 scale)
    noisy = (teacher != true)
    log_loss = torch.where(noisy, 1.8 + 0.6 * torch.randn(n, generator=g), -1.5 + 0.7 * torch.randn(n, generator=g))
    return (true.to(device), seed_labels.to(device), teacher.to(device), log_loss.exp().to(device))


def time_it(fn, device, repeats):
    out, ts = None, []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return out, statistics.median(ts)


def bench(n: int, k: int, device: torch.device, repeats: int) -> dict[str, float]:
    true, seed_labels, teacher, loss = synthetic(n, k, max(2, int(k * 0.75)), device)
    active0 = active_from_labels(seed_labels, k)
    res: dict[str, float] = {}

    q = LabelQueue(n, length=5, seed_labels=seed_labels, seed_copies=2, device=device, n_labels=k)
    for _ in range(3):
        q.push(teacher)  # fill the queue: the vote runs on full (N, 5) rows as in steady state
    _, res["push"] = time_it(lambda: q.push(teacher), device, repeats)
    (vote, agr), res["vote+agreement"] = time_it(lambda: q.vote_and_agreement(active0), device, repeats)
    act, res["masking"] = time_it(lambda: update_active(active0, vote, k), device, repeats)
    _, res["change_rate"] = time_it(lambda: label_change_rate(seed_labels, vote), device, repeats)
    _, res["cluster_count"] = time_it(lambda: int(act.sum()), device, repeats)
    _, res["gmm"] = time_it(lambda: fit_clean_posterior(loss), device, repeats)

    q2 = LabelQueue(n, length=5, seed_labels=seed_labels, seed_copies=2, device=device, n_labels=k)
    for _ in range(3):
        q2.push(teacher)
    out, res["epoch_end_update (total)"] = time_it(
        lambda: epoch_end_update(q2, teacher, loss, active0, push=True, noise_model="gmm"), device, repeats
    )
    hist = EpochHistory(n, true=true.cpu())
    _, res["history append"] = time_it(
        lambda: hist.append(0, out["labels"], out["p_clean"], loss, out["queue_agreement"], out["gmm"]), device, 1
    )
    fit = out["gmm"]
    res["_gmm_iters"] = fit.n_iter
    res["_frac_clean"] = out["frac_clean"]
    res["_n_clusters"] = out["n_clusters"]
    return res


def metrics_epoch_seconds(path) -> float:
    """Median ``seconds_steps`` over the ``"stage": "ssrl"`` lines of a run's metrics.jsonl."""
    import json
    from pathlib import Path

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    secs = [r["seconds_steps"] for r in rows if r.get("stage") == "ssrl" and r.get("seconds_steps")]
    if not secs:
        raise SystemExit(f"{path}: no 'ssrl' lines with seconds_steps")
    return float(statistics.median(secs))


def demo_step_seconds(k: int, batch: int, repeats: int) -> float:
    """Seconds of one SSRL training step of the demo profile's models on this CPU.

    Tiny encoder + AAM over ``k``: teacher forward on a 4 s crop, student forward + backward on
    a 2 s crop, Adam step (the EMA update and data loading are not included).
    """
    import copy

    import torch.nn.functional as F

    from ssrl_lab.models import EncoderConfig, SpeakerNet
    from ssrl_lab.train.classifier import ClassifierModel

    torch.manual_seed(0)
    student = ClassifierModel(SpeakerNet(EncoderConfig.preset("tiny")), k)
    teacher = copy.deepcopy(student).eval()
    opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    xs, xt = 0.1 * torch.randn(batch, 32000), 0.1 * torch.randn(batch, 64000)
    y = torch.randint(0, k, (batch,))

    def step():
        with torch.no_grad():
            teacher(xt, y)
        loss = F.cross_entropy(student(xs, y), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return time_it(step, torch.device("cpu"), max(repeats, 1) + 1)[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000:8000,4800:300", help="comma-separated N:K pairs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="median over this many runs per stage")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    ap.add_argument("--epoch-s", default="", help="comma-separated training-epoch seconds, one per size (0 = unknown)")
    ap.add_argument("--metrics", default=None, help="an SSRL run's metrics.jsonl: its median seconds_steps is "
                    "the first size's training epoch")
    ap.add_argument("--demo-batch", type=int, default=64, help="batch of the measured demo step (0 = do not measure)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    # calibration: one elementwise pass over 1 M float64 (about 1 ms on an idle modern core);
    # on a shared machine every number below scales with it
    x = torch.randn(1_000_000, dtype=torch.float64, device=device)
    _, t_pass = time_it(lambda: x + 1.0, device, 10)
    print(f"calibration: x + 1 on 1 M float64 = {t_pass * 1000:.1f} ms")
    pairs = [tuple(int(v) for v in pair.split(":")) for pair in args.sizes.split(",")]
    epoch_s = [float(v) for v in args.epoch_s.split(",")] if args.epoch_s else [0.0] * len(pairs)
    if len(epoch_s) != len(pairs):
        raise SystemExit(f"--epoch-s has {len(epoch_s)} values for {len(pairs)} sizes")
    if args.metrics:
        epoch_s[0] = metrics_epoch_seconds(args.metrics)
    for i, (n, k) in enumerate(pairs):
        res = bench(n, k, device, args.repeats)
        print(f"\nN={n:,} K={k:,}  (median of {args.repeats})")
        for name, v in res.items():
            if name.startswith("_"):
                print(f"  {name[1:]:<26s} {v}")
            else:
                print(f"  {name:<26s} {v * 1000:9.1f} ms")
        source = f"--metrics {args.metrics}" if (args.metrics and i == 0) else "--epoch-s"
        if not epoch_s[i] and n <= 20_000 and args.demo_batch:
            step = demo_step_seconds(k, args.demo_batch, args.repeats)
            epoch_s[i] = step * (n // args.demo_batch)
            source = f"measured demo step {step:.3f} s x {n // args.demo_batch} steps (batch {args.demo_batch})"
        end = res["epoch_end_update (total)"]
        if epoch_s[i]:
            print(f"  training epoch             {epoch_s[i]:9.1f} s   ({source})")
            print(f"  epoch-end share of epoch   {100 * end / (end + epoch_s[i]):9.2f} %")
        else:
            print("  epoch-end share of epoch   (no training-epoch time: pass --epoch-s or --metrics)")


if __name__ == "__main__":
    main()
