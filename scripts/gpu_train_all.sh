#!/usr/bin/env bash
# One call on a lent GPU machine: train the two shipped GANs side by side on one GPU and,
# meanwhile, build the CUDA ops and run their tests. Runs from the source tree (nothing is
# installed there: gis falls back to its built-in plugin list). Results land in $OUT, as few
# files (the device tool brings back at most 8).   Usage: MINUTES=6 bash scripts/gpu_train_all.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
MIN=${MINUTES:-6}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$PWD/plugins
W=/tmp/gis_train; rm -rf "$W"; mkdir -p "$W"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } \
  | tee "$W/gpu.txt"

python3 -m gis_progan.train --data fashion-colors --out "$W/progan" --minutes "$MIN" \
  --device cuda --no-progress > "$W/progan.log" 2>&1 &
p2=$!
python3 -m gis_dvbpr_gan.train --data fashion-colors --out "$W/dvbpr_gan" --minutes "$MIN" \
  --batch-size 64 --device cuda --no-progress > "$W/dvbpr_gan.log" 2>&1 &
p3=$!
if [ -f scripts/gpu_check_ops.sh ]; then
  ( OUT="$W/ops" bash scripts/gpu_check_ops.sh > "$W/ops.log" 2>&1 ) &
  p4=$!
fi
wait $p2; echo "progan exit $?" | tee -a "$W/gpu.txt"
wait $p3; echo "dvbpr_gan exit $?" | tee -a "$W/gpu.txt"
if [ -n "${p4:-}" ]; then wait $p4; echo "ops exit $?" | tee -a "$W/gpu.txt"; fi
cp "$W/progan/progan.safetensors" "$OUT/progan.safetensors" 2>/dev/null
cp "$W/dvbpr_gan/dvbpr_gan.safetensors" "$OUT/dvbpr_gan.safetensors" 2>/dev/null
# logs, model cards, sample grids, ops results: one archive (resumable checkpoints are too big)
tar --exclude='checkpoint.safetensors' --exclude='train-state.safetensors' \
    --exclude='*/progan.safetensors' --exclude='*/dvbpr_gan.safetensors' \
    -czf "$OUT/train_logs.tar.gz" -C "$W" .
# the device tool brings back files of at most 16 MiB: split larger ones (cat them back here)
for f in "$OUT"/*.safetensors; do
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 15000000 ] && split -b 15000000 -d "$f" "$f.part" && rm "$f"
done
ls -la "$OUT"; tail -n 4 "$W"/*.log; cat "$W/gpu.txt"
