#!/usr/bin/env bash
# One self-contained GPU check (target: under 8 minutes on one H100).
#   bash bench/gpu_check.sh [OUT_DIR]
# Sections (each timed, each bounded by `timeout`; a failing section is reported and the rest run):
#   cuda-tests   tests/test_cuda.py: the GPU paths against their CPU references
#   smoke        smoke training of DINO, the iterative baseline and SSRL on CUDA with bf16
#   kmeans       our torch backend on CUDA against faiss (faiss-gpu when installed, else faiss-cpu on
#                every core, FAISS_ITERS iterations: 3 by default, ~20 s each): K = 8,000 over
#                1,000,000 x 192 clustered embeddings; compare seconds per iteration
#   steps        paper-size DINO and SSRL steps (bf16): utt/s, the teacher's share, peak memory
#   train        the real trainers (DINO, then SSRL with k-means and label updates) on a generated
#                VoxCeleb-layout corpus: utt/s with loading and augmentation in the workers (today's
#                path), the teacher's share, and each trainer's utt/s as a share of the bare step
#   train-batch  the same with augment_on=batch (augmentation on the GPU after the loader) from the
#                packed format (ssrl_lab.data.pack): the share of the bare step (goal: 90 % or more)
#   steps-compile  the paper-size steps of `steps` with compile=true (torch.compile of the
#                encoders): bf16 TFLOP/s with and without compile, side by side with `steps`
#   embed        embedding extraction through the real pipeline against the encoder alone
#   fbank        our batched log-Mel on the GPU against torchaudio's per-file Kaldi fbank
#   ddp-1gpu     the SSRL smoke run under torchrun with two ranks sharing the one GPU (gloo)
# Environment: PY (python), GPU_CHECK_CORPUS (a SynthVox corpus already built: skips the build,
# which needs espeakng-loader), KMEANS_N (default 1000000), GPU_CHECK_ONLY (space-separated
# section names: run only those; smoke must run before ddp-1gpu, steps before train and train-batch).
# Logs and JSON land in OUT_DIR. The whole script now takes more than the device tool's 10 minutes a
# command: run it in two calls, e.g. GPU_CHECK_ONLY="corpus cuda-tests smoke kmeans steps fbank ddp-1gpu"
# then GPU_CHECK_ONLY="steps train train-batch steps-compile embed" (same OUT_DIR).
# Record the summary it prints, with the device, in bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${1:-${OUT:-/tmp/ssrl_gpu_check}}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
FAILED=()

section() {  # section NAME TIMEOUT_S COMMAND... (a shell function must be exported: bash -c NAME)
  local name=$1 limit=$2; shift 2
  if [ -n "${GPU_CHECK_ONLY:-}" ] && [[ " $GPU_CHECK_ONLY " != *" $name "* ]]; then
    return 0
  fi
  local t0=$(date +%s)
  echo "=== $name (limit $limit s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  cat "$OUT/$name.log"
  if [ $rc -eq 0 ]; then
    echo "[$name] ok in $dt s" | tee -a "$SUMMARY"
  else
    echo "[$name] FAILED (exit $rc$([ $rc -eq 124 ] && echo ', timed out')) after $dt s; last lines:" | tee -a "$SUMMARY"
    tail -n 12 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    FAILED+=("$name")
  fi
}

# GPU_CHECK_DEVICE=cpu runs every section at toy sizes on the CPU: a check of this script itself
DEV=${GPU_CHECK_DEVICE:-cuda}
export PY OUT DEV
"$PY" - <<'EOF' | tee -a "$SUMMARY" || exit 1
import os, sys, torch
if os.environ["DEV"] == "cpu":
    print(f"device: cpu (script check only) | torch {torch.__version__}"); sys.exit(0)
if not torch.cuda.is_available():
    sys.exit("gpu_check: CUDA is not available on this machine")
p = torch.cuda.get_device_properties(0)
try:
    import faiss
    fa = f"faiss {faiss.__version__} ({faiss.get_num_gpus()} GPU(s) visible to faiss)"
except ImportError:
    fa = "faiss not installed"
print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs | torch {torch.__version__} "
      f"(CUDA {torch.version.cuda}) | {os.cpu_count()} CPUs | {fa}")
EOF

CORPUS=${GPU_CHECK_CORPUS:-$OUT/synthvox-smoke}
export CORPUS
if [ -z "${GPU_CHECK_CORPUS:-}" ]; then
  section corpus 120 "$PY" -m ssrl_lab.data.synthvox --profile smoke --out "$CORPUS"
fi

section cuda-tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py

smoke() {
  # smoke profiles with their full epochs, on the GPU with bf16
  local common=(device=$DEV amp=$([ "$DEV" = cpu ] && echo off || echo bf16) max_steps_per_epoch=0)
  "$PY" -m ssrl_lab.train.dino --profile smoke --corpus "$CORPUS" --run-dir "$OUT/dino" --quiet "${common[@]}" epochs=3 &&
  "$PY" -m ssrl_lab.train.iterative --profile smoke --corpus "$CORPUS" --run-dir "$OUT/iterative" --quiet "${common[@]}" dino_run="$OUT/dino" &&
  "$PY" -m ssrl_lab.train.ssrl --profile smoke --corpus "$CORPUS" --run-dir "$OUT/ssrl" --quiet "${common[@]}" dino_run="$OUT/dino" &&
  "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for run in ("dino", "iterative", "ssrl"):
    res = json.loads((out / run / "results.json").read_text())
    print(f"{run}: EER {res.get('eer'):.2f} % on the smoke trials, results.json written")
EOF
}
export -f smoke
section smoke 150 bash -c smoke

if [ "$DEV" = cpu ]; then
  KM=(--n 4000 --k 40) STEP=(--device cpu --encoder tiny --n-prototypes 256 --k 32 --steps 1 --warmup 1)
  STEP_B=(--dino-batches 2 --ssrl-batches 2) STEP_B2=(--dino-batches "" --ssrl-batches 4)
  EMB=(--device cpu --n 12 --presets tiny --batch 4 --workers 2 --repeats 2) FB=(--device cpu --batch 4)
  TRAIN=(--device cpu --encoder micro --speakers 6 --utts 6 --dino-batch 4 --ssrl-batch 4 --k 6 --steps 2 --workers 0
         --prototypes 64 --dino-epochs 1)
  COMPILE=()  # torch.compile takes minutes on a CPU: the section is skipped in the script check
else
  KM=(--n "${KMEANS_N:-1000000}" --k 8000 --faiss-iters "${FAISS_ITERS:-3}") STEP=(--device cuda) STEP_B=() STEP_B2=(--dino-batches "" --ssrl-batches 240)
  EMB=(--device cuda --n 3000 --presets ecapa_c512,ssrl_paper --batch 128 --workers 8) FB=(--device cuda --batch 128)
  TRAIN=(--device cuda --speakers 100 --utts 40 --dino-batch 120 --ssrl-batch 240 --steps 30 --workers 12 --dino-epochs 2)
  COMPILE=(--device cuda --dino-batches 120 --ssrl-batches 240 --warmup 6 --compile)
fi
section kmeans 180 "$PY" bench/kmeans.py "${KM[@]}" --d 192 --iters 20 --backends torch,faiss --device "$DEV"
section steps 150 "$PY" bench/gpu_step.py "${STEP[@]}" "${STEP_B[@]}" --json "$OUT/gpu_step.json"
section steps-cudnn-benchmark 60 "$PY" bench/gpu_step.py "${STEP[@]}" "${STEP_B2[@]}" --cudnn-benchmark
section train 300 "$PY" bench/train_throughput.py "${TRAIN[@]}" --dir "$OUT" --json "$OUT/train.json" --bare-json "$OUT/gpu_step.json"
section train-batch 300 "$PY" bench/train_throughput.py "${TRAIN[@]}" --augment-on batch --packed --dir "$OUT" \
  --json "$OUT/train_batch.json" --bare-json "$OUT/gpu_step.json"
if [ ${#COMPILE[@]} -gt 0 ]; then
  section steps-compile 300 "$PY" bench/gpu_step.py "${COMPILE[@]}" --json "$OUT/gpu_step_compile.json"
fi
section embed 150 "$PY" bench/embed_throughput.py "${EMB[@]}" --chunk-s 3.0 --dir "$OUT" --json "$OUT/embed.json"
section fbank 45 "$PY" bench/fbank.py "${FB[@]}" --seconds 2.0

ddp_one_gpu() {
  # two ranks on one GPU: nccl refuses that, so the ranks talk over gloo (SSRL_LAB_DIST_BACKEND)
  SSRL_LAB_DIST_BACKEND=gloo "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
    -m ssrl_lab.train.ssrl --profile smoke --corpus "$CORPUS" --run-dir "$OUT/ssrl_ddp" --quiet \
    device=$([ "$DEV" = cpu ] && echo cpu || echo cuda:0) dino_run="$OUT/dino" &&
  "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
a, b = (json.loads((out / r / "results.json").read_text()) for r in ("ssrl", "ssrl_ddp"))
print(f"SSRL smoke: 1 process EER {a['eer']:.2f} %, 2 ranks on one GPU EER {b['eer']:.2f} %")
EOF
}
export -f ddp_one_gpu
section ddp-1gpu 90 bash -c ddp_one_gpu

echo
echo "===== gpu_check summary ($OUT) ====="
cat "$SUMMARY"
for s in kmeans steps steps-cudnn-benchmark steps-compile train train-batch embed fbank; do
  [ -f "$OUT/$s.log" ] || continue
  echo "--- $s"
  grep -vE "^\s*(done|  DINO batch|  SSRL batch)|^gpu_step|^data:" "$OUT/$s.log" | grep -v "^$" | tail -n 12
done
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED sections: ${FAILED[*]}"
  exit 1
fi
