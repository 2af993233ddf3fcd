#!/usr/bin/env bash
# One self-contained GPU check (target: under 8 minutes on one H100).
#   bash bench/gpu_check.sh [OUT_DIR]
# 1. smoke training of every method on CUDA with bf16 autocast (DINO, iterative, SSRL);
# 2. the k-means bench: faiss (faiss-gpu when installed) against the torch backend on CUDA,
#    K = 8,000 over 1,000,000 x 192 clustered embeddings;
# 3. throughput: utterances per second in training (SSRL: with the teacher's share of the step)
#    and in embedding extraction.
# Prints one summary block; record it with the device in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT=${1:-${OUT:-/tmp/ssrl_gpu_check}}
mkdir -p "$OUT"
"$PY" - <<'EOF'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("gpu_check: CUDA is not available on this machine")
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
EOF

CORPUS="$OUT/synthvox-smoke"
"$PY" -m ssrl_lab.data.synthvox --profile smoke --out "$CORPUS"

# Smoke profiles, but with the real step counts of a few epochs and bf16 on the GPU.
COMMON=(device=cuda amp=bf16 max_steps_per_epoch=0)
t0=$(date +%s)
"$PY" -m ssrl_lab.train.dino --profile smoke --corpus "$CORPUS" --run-dir "$OUT/dino" --quiet "${COMMON[@]}" epochs=3
"$PY" -m ssrl_lab.train.iterative --profile smoke --corpus "$CORPUS" --run-dir "$OUT/iterative" --quiet "${COMMON[@]}" dino_run="$OUT/dino"
"$PY" -m ssrl_lab.train.ssrl --profile smoke --corpus "$CORPUS" --run-dir "$OUT/ssrl" --quiet "${COMMON[@]}" dino_run="$OUT/dino"
echo "smoke training of three methods: $(( $(date +%s) - t0 )) s"

"$PY" bench/kmeans.py --n 1000000 --d 192 --k 8000 --iters 20 --backends faiss,torch --device cuda | tee "$OUT/kmeans.txt"

"$PY" - "$OUT" "$CORPUS" <<'EOF'
import json, sys, time
from pathlib import Path
import torch
from ssrl_lab.data.corpus import open_corpus
from ssrl_lab.eval.embed import extract_embeddings
from ssrl_lab.models import EncoderConfig, SpeakerNet

out, corpus_dir = Path(sys.argv[1]), sys.argv[2]

def rows(run):
    return [json.loads(l) for l in (out / run / "metrics.jsonl").read_text().splitlines() if l.strip()]

def cfg(run):
    return json.loads((out / run / "config.json").read_text())

for run in ("dino", "ssrl"):
    ep = [r for r in rows(run) if r.get("stage") == run and ("steps" in r or "seconds_steps" in r)]
    if not ep:
        continue
    last = ep[-1]
    bs = cfg(run)["batch_size"]
    n_utts = last["steps"] * bs if last.get("steps") else (len(open_corpus(corpus_dir).train) // bs) * bs
    secs = last.get("seconds_steps", last.get("seconds"))
    if n_utts and secs:
        msg = f"{run}: {n_utts / secs:.0f} utterances/s in training (batch {bs})"
        if run == "ssrl" and last.get("teacher_share") is not None:
            msg += f", teacher forward {100 * last['teacher_share']:.0f} % of the step"
        print(msg)

corpus = open_corpus(corpus_dir)
for preset in ("ecapa_c512", "ssrl_paper"):
    net = SpeakerNet(EncoderConfig.preset(preset)).cuda()
    extract_embeddings(net, corpus.test, device="cuda", batch_size=64, chunk_s=3.0, progress=False)  # warm-up
    torch.cuda.synchronize(); t = time.perf_counter()
    extract_embeddings(net, corpus.train, device="cuda", batch_size=64, chunk_s=3.0, progress=False)
    torch.cuda.synchronize(); dt = time.perf_counter() - t
    print(f"embedding extraction, {preset}: {len(corpus.train) / dt:.0f} utterances/s (3 s chunks, batch 64)")
EOF
