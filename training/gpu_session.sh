#!/usr/bin/env bash
# One prepared run for a lent GPU (the device tool; docs/TRAINING.md "On a lent GPU").
#
#   here, once:  python training/gpu_kit.py        # gpu_kit/: the HoloLens training part, 9 MiB
#   device:      run(command="bash training/gpu_session.sh", carry=["gpu_kit"], timeout_s=600)
#   here, after: python training/finish_model.py --model <files_at>/candidate.pt --write FINISHED   (stage, head, calibration)
#                python training/evaluate_model.py --model FINISHED ...  (the card's commands)
#
# A task is lent 15 device-minutes in all, the machine's start included, and one command may run
# 10: so this trains TRAIN_MIN (default 6) minutes from the shipped model on the usual mixture
# (training/configs/matching.yaml, the HoloLens source read from gpu_kit/), exports a float16
# candidate, and times the predictor on the GPU. At most 8 files come back from $OUT: env.txt,
# train.log, metrics.csv, val.csv, candidate.pt, bench.log, node_view_scaling.json. The held-out
# sets never leave this machine, so the candidate is judged here, by the card's rule.
# Runs with the device image's python3 (torch with CUDA); PYTHON=... overrides (a CPU dry run here:
# OUT=/tmp/gpu_out TRAIN_MIN=1 PYTHON=.venv/bin/python BATCH=2 WORKERS=1 BENCH_VIEWS="1 8" bash training/gpu_session.sh;
# it rewrites benchmarks/results/node_view_scaling_*threads.json: git checkout that file after).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
: "${OUT:?OUT must name the folder whose files come back}"
TRAIN_MIN=${TRAIN_MIN:-6}
BATCH=${BATCH:-32}
WORKERS=${WORKERS:-12}
STEPS=${STEPS:-20000}   # the cosine schedule's length: the time limit ends the run first
BENCH_VIEWS=${BENCH_VIEWS:-1 8 64 256 1024}
RUN=${RUN_DIR:-/tmp/mvgd_gpu_run}
export PYTHONUNBUFFERED=1

if [ ! -d gpu_kit/hololens_office_train ]; then
  echo "gpu_session: gpu_kit/hololens_office_train is missing: run python training/gpu_kit.py here and carry gpu_kit" >&2
  exit 2
fi
{
  date -u
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  echo "cpus $(nproc)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

SOURCES='[{kind: procedural, weight: 0.6}, {kind: deepvideomvs, path: gpu_kit/hololens_office_train, split: all, weight: 0.3}, {kind: tum, path: data/tum_fr1_rpy_small, tum_camera: fr1, weight: 0.1}]'
rm -rf "$RUN"
status=0
$PY training/train.py --config training/configs/matching.yaml --init-from models/mvgd_default.pt --run-dir "$RUN" \
  --steps "$STEPS" --max-minutes "$TRAIN_MIN" --batch-size "$BATCH" --num-workers "$WORKERS" --threads 0 \
  --log-every 50 --ckpt-minutes 2 --no-progress \
  --set optim.lr=1e-4 --set optim.min_lr=1e-5 --set optim.warmup_steps=100 --set val.every=1000 \
  --set "data.sources=$SOURCES" \
  --export "$OUT/candidate.pt" --export-half > "$OUT/train.log" 2>&1 || status=$?
tail -n 5 "$OUT/train.log"
cp "$RUN/metrics.csv" "$OUT/" 2>/dev/null || true
cp "$RUN/val.csv" "$OUT/" 2>/dev/null || true

# GPU figures (issue 11): the predictor the node calls, shipped architecture, 1 DDIM step.
$PY benchmarks/bench_node.py --part views --views $BENCH_VIEWS --steps 1 > "$OUT/bench.log" 2>&1 || status=$?
newest=$(ls -t benchmarks/results/node_view_scaling_*threads.json 2>/dev/null | head -n 1)  # the tree holds older ones too
[ -n "$newest" ] && cp "$newest" "$OUT/node_view_scaling.json"
tail -n 12 "$OUT/bench.log"
exit $status
