#!/usr/bin/env bash
# Second GPU call of a session: the engine's acceptance check (100 random user/item pairs, 3
# shards), the inversion quality of progan (100 held-out items), a dvbpr-gan retrain with a
# plain discriminator, and the CUDA ops tests -- side by side on one GPU.
# LPIPS weights travel as safetensors in .device_assets/ (python -m gis.assets export
# .device_assets --half): the asset packages are not installed there.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
MIN=${MINUTES:-4.5}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$PWD/plugins GIS_ASSETS_DIR=$PWD/.device_assets
W=/tmp/gis_eval; rm -rf "$W"; mkdir -p "$W"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$W/gpu.txt"
python3 -m gis_dvbpr_gan.train --data fashion-colors --out "$W/dvbpr_gan" --minutes "$MIN" \
  --batch-size 64 --no-d-batchnorm --device cuda --no-progress > "$W/dvbpr_gan.log" 2>&1 &
pg=$!
for s in 0 1 2; do
  python3 -m gis.evaluation.pairs --pairs 100 --shard $s --num-shards 3 --device cuda \
    --out "$OUT/pairs_$s.json" > "$W/pairs_$s.log" 2>&1 &
done
python3 -m gis.evaluation.model_quality inversion --generator progan --n 100 --device cuda \
  --out "$OUT/inversion_progan.json" > "$W/inversion.log" 2>&1 &
( OUT="$W/ops" bash scripts/gpu_check_ops.sh > "$W/ops.log" 2>&1 ) &
wait
cp "$W/dvbpr_gan/dvbpr_gan.safetensors" "$OUT/dvbpr_gan.safetensors" 2>/dev/null
for f in "$OUT"/*.safetensors; do
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 15000000 ] && split -b 15000000 -d "$f" "$f.part" && rm "$f"
done
tar --exclude='checkpoint.safetensors' --exclude='*/dvbpr_gan.safetensors' \
  -czf "$OUT/eval_logs.tar.gz" -C "$W" .
ls -la "$OUT"; tail -n 3 "$W"/*.log
