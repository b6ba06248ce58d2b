#!/usr/bin/env bash
# Everything a lent GPU session should do, as ONE device call (a session has 15 min of device
# time, start-up included, and a call at most 10 min; a warm machine goes back after 30 s idle,
# so two calls in a row risk a second start):
#   1. the CUDA ops check alone on the GPU (issue 5: clean CUDA timing tables and the CUDA tests
#      of the current code), scripts/gpu_check_ops.sh, ~3-4 min;
#   2. ProGAN training for the rest of the call (issue 3: the progan FID), alone on the GPU,
#      scripts/gpu_train_full.sh with PROGAN_BATCHES=64 DVBPR_GAN=0 SKIP_OPS=1; continuing an
#      earlier session's run when PROGAN_INIT names its warmstart.safetensors.
# What comes back (at most 8 files): ops_summary.txt, ops_check.tar.gz (every log, the JUnit
# XML and bench_ops_cuda.json), progan_b64.safetensors, progan_b64_warmstart.safetensors.part00
# and .part01, train_logs.tar.gz.
#
# Before the call, here:
#   python scripts/make_device_data.py --train-items 16000 --test-items 1000   # 6.2 MiB
# The call (timeout_s 600; carry .device_data, plus runs/progan-gpu when continuing):
#   TOTAL_MINUTES=9 bash scripts/gpu_session.sh
#   PROGAN_INIT=runs/progan-gpu/warmstart.safetensors TOTAL_MINUTES=9 bash scripts/gpu_session.sh
# After it, here: cat progan_b64_warmstart.safetensors.part* > runs/progan-gpu/warmstart.safetensors
# (the next session's PROGAN_INIT), measure the FID of progan_b64.safetensors (docs/MODELS.md),
# and record the ops tables in benchmarks/RESULTS.md.
# SKIP_OPS=1 skips step 1 (e.g. once the ops are recorded); DEVICE=cpu SKIP_OPS=1
# TOTAL_MINUTES=1.5 is a dry run on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
TOTAL=${TOTAL_MINUTES:-9}
start=$(date +%s)

if [ -z "${SKIP_OPS:-}" ]; then
  OPS=/tmp/gis_ops; rm -rf "$OPS"
  OUT="$OPS" timeout 330 bash scripts/gpu_check_ops.sh > /tmp/gis_ops.log 2>&1
  echo "ops check exit $? after $(( $(date +%s) - start )) s" >> "$OPS/summary.txt"
  cp /tmp/gis_ops.log "$OPS/gpu_check_ops.log"
  cp "$OPS/summary.txt" "$OUT/ops_summary.txt"
  tar -czf "$OUT/ops_check.tar.gz" -C "$OPS" .
  cat "$OUT/ops_summary.txt"
fi

# what is left of the call for training: the budget less the time spent and ~70 s to build
# the training set and pack up
left=$(python3 -c "print(round(max(0.0, $TOTAL - ($(date +%s) - $start) / 60.0 - 1.2), 2))")
echo "progan training: $left min"
if python3 -c "import sys; sys.exit(0 if $left >= 1.0 else 1)"; then
  OUT="$OUT" MINUTES="$left" PROGAN_BATCHES=64 DVBPR_GAN=0 SKIP_OPS=1 \
    bash scripts/gpu_train_full.sh
else
  echo "too little time left for training"
fi
echo "session script done in $(( $(date +%s) - start )) s"
