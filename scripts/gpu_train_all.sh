#!/usr/bin/env bash
# One call on a lent GPU machine: train the three shipped models side by side on one GPU, and,
# meanwhile, build the CUDA ops and run their tests. Results land in $OUT (few files: the
# device tool brings back at most 8).  Usage: MINUTES=6 bash scripts/gpu_train_all.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
MIN=${MINUTES:-6}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$PWD/plugins
W=/tmp/gis_train; rm -rf "$W"; mkdir -p "$W"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$W/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$W/gpu.txt"
# entry points (the dataset and plugins are found through them); no extension build here
GIS_NO_EXT=1 python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . \
  > "$W/pip.log" 2>&1 || echo "pip install -e failed (see pip.log)" | tee -a "$W/gpu.txt"

python3 -m gis_dvbpr.train --data fashion-colors --out "$W/dvbpr" --minutes "$MIN" \
  --device cuda > "$W/dvbpr.log" 2>&1 &
p1=$!
python3 -m gis_progan.train --data fashion-colors --out "$W/progan" --minutes "$MIN" \
  --device cuda > "$W/progan.log" 2>&1 &
p2=$!
python3 -m gis_dvbpr_gan.train --data fashion-colors --out "$W/dvbpr_gan" --minutes "$MIN" \
  --device cuda > "$W/dvbpr_gan.log" 2>&1 &
p3=$!
# CUDA ops: build + tests + benchmarks, while the GPU trains (it competes a little)
( OUT="$W/ops" bash scripts/gpu_check_ops.sh > "$W/ops.log" 2>&1 ) &
p4=$!
wait $p1; echo "dvbpr exit $?" | tee -a "$W/gpu.txt"
wait $p2; echo "progan exit $?" | tee -a "$W/gpu.txt"
wait $p3; echo "dvbpr_gan exit $?" | tee -a "$W/gpu.txt"
wait $p4; echo "ops exit $?" | tee -a "$W/gpu.txt"
# shipped weights (small) come back as files; everything else (logs, cards, samples) in one tar
for m in dvbpr progan dvbpr_gan; do
  f=$(ls "$W/$m"/*.safetensors 2>/dev/null | grep -v -e resume -e state | head -n 1)
  [ -n "$f" ] && cp "$f" "$OUT/${m}.safetensors"
done
tar --exclude='*resume*' --exclude='*state*' -czf "$OUT/train_logs.tar.gz" -C "$W" . 2>/dev/null
ls -la "$OUT"; tail -n 5 "$W"/*.log
