#!/usr/bin/env bash
# One call on a lent GPU machine (third session): retrain the two shipped GANs on all 60,000
# Fashion-MNIST *train* images of the fashion-colors world (same looks, same seed; the 2,000
# held-out FID images come from the test split and are never seen), side by side on one GPU,
# with two ProGAN batch sizes as a hedge; meanwhile build the CUDA ops and run their tests
# and benchmarks. FID is measured back on the dev machine (the FID Inception file, 87 MB, is
# too big to travel).
#
# Needs .device_data/ (carried): the Fashion-MNIST IDX files, written by
#   python scripts/make_device_data.py                   (all 60,000 train images, 26 MiB)
#   python scripts/make_device_data.py --train-items 16000 --test-items 1000
#                                    (to leave room in the 64 MiB for a ProGAN warm start)
# Usage: MINUTES=8 bash scripts/gpu_train_full.sh      (results in $OUT, at most 8 files)
#   dvbpr-gan alone on the GPU, from the shipped weights:
#   PROGAN_BATCHES= SKIP_OPS=1 DVBPR_GAN_INIT=plugins/gis_dvbpr_gan/weights/fashion-colors.safetensors \
#     MINUTES=9 bash scripts/gpu_train_full.sh
#   progan alone, continuing a run whose warmstart.safetensors was brought back earlier
#   (its batch size, schedule and hyper-parameters come with it; the name gives the folder):
#   PROGAN_BATCHES=64 PROGAN_INIT=runs/progan-gpu/warmstart.safetensors DVBPR_GAN=0 SKIP_OPS=1 \
#     MINUTES=9 bash scripts/gpu_train_full.sh
# Files over 15 MB come back split (NAME.part00, NAME.part01, ...): `cat NAME.part* > NAME`.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
MIN=${MINUTES:-8}
DEV=${DEVICE:-cuda}  # DEVICE=cpu SKIP_OPS=1 MINUTES=0.3: a dry run of the script on a CPU
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$PWD/plugins OMP_NUM_THREADS=2
W=/tmp/gis_train; rm -rf "$W"; mkdir -p "$W/fm"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } \
  | tee "$W/gpu.txt"

# the CUDA ops check starts first (it compiles on the CPUs while the GANs use the GPU)
# (capped so that it ends with the trainings; its summary.txt is written step by step)
[ -n "${SKIP_OPS:-}" ] || ( OUT="$W/ops" MAX_JOBS=6 timeout $(( ${MIN%.*} * 60 + 45 )) bash scripts/gpu_check_ops.sh \
    > "$W/ops.log" 2>&1; echo "ops check exit $?" >> "$W/gpu.txt" ) &

# the training set of the fashion-colors world (seed 0) from every train image carried,
# images only: 50 users suffice
python3 - <<'EOF' 2>&1 | tee -a "$W/gpu.txt"
import lzma, shutil, time
from pathlib import Path
t = time.time()
src, dst = Path(".device_data"), Path("/tmp/gis_train/fm")
with lzma.open(src / "train-images-idx3-ubyte.xz") as f, open(dst / "train-images-idx3-ubyte", "wb") as g:
    shutil.copyfileobj(f, g)
for p in src.glob("*.gz"):
    shutil.copy(p, dst / p.name)
from gis.data import fashion_colors as fc
n = len(fc.read_idx(dst / "train-labels-idx1-ubyte.gz"))
m = len(fc.read_idx(dst / "t10k-labels-idx1-ubyte.gz"))
a = fc.build_arrays(dst, items=n, heldout=min(2000, m), users=50, seed=0)
fc.save_compact(a, "/tmp/gis_train/fashion-colors-train.npz")
print(f"built fashion-colors-train.npz ({n} train images) in {time.time() - t:.0f} s")
EOF
DATA=$W/fashion-colors-train.npz

train_progan() {  # name, batch size
  python3 -m gis_progan.train --data "$DATA" --out "$W/$1" --minutes "$MIN" --batch-size "$2" \
    --device "$DEV" --no-progress ${PROGAN_INIT:+--init-from "$PROGAN_INIT"} > "$W/$1.log" 2>&1
  echo "$1 exit $?" | tee -a "$W/gpu.txt"
}
# PROGAN_BATCHES: one ProGAN run per batch size ("" for none; with PROGAN_INIT, a warm start
# from that warmstart.safetensors, the batch size is the warm run's); DVBPR_GAN=0 skips dvbpr-gan;
# DVBPR_GAN_INIT=PATH warm-starts it from an exported file (e.g. the shipped weights,
# plugins/gis_dvbpr_gan/weights/fashion-colors.safetensors). Each run beside another slows both.
for b in ${PROGAN_BATCHES-256 128}; do train_progan "progan_b$b" "$b" & done
if [ "${DVBPR_GAN:-1}" != 0 ]; then
  ( python3 -m gis_dvbpr_gan.train --data "$DATA" --out "$W/dvbpr_gan" --minutes "$MIN" \
      --batch-size 64 --no-d-batchnorm --device "$DEV" --no-progress \
      ${DVBPR_GAN_INIT:+--init-from "$DVBPR_GAN_INIT"} > "$W/dvbpr_gan.log" 2>&1
    echo "dvbpr_gan exit $?" | tee -a "$W/gpu.txt" ) &
fi
wait
for b in ${PROGAN_BATCHES-256 128}; do
  cp "$W/progan_b$b/progan.safetensors" "$OUT/progan_b$b.safetensors" 2>/dev/null
  cp "$W/progan_b$b/warmstart.safetensors" "$OUT/progan_b${b}_warmstart.safetensors" 2>/dev/null
done
cp "$W/dvbpr_gan/dvbpr_gan.safetensors" "$OUT/dvbpr_gan.safetensors" 2>/dev/null
tar --exclude='checkpoint.safetensors' --exclude='*/progan.safetensors' \
    --exclude='*/warmstart.safetensors' \
    --exclude='*/dvbpr_gan.safetensors' --exclude='fm' --exclude='*.npz' \
    -czf "$OUT/train_logs.tar.gz" -C "$W" .
for f in "$OUT"/*.safetensors; do  # at most 16 MiB per file comes back: cat the parts here
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 15000000 ] && split -b 15000000 -d "$f" "$f.part" && rm "$f"
done
ls -la "$OUT"; tail -n 3 "$W"/*.log; cat "$W/gpu.txt" "$W/ops/summary.txt" 2>/dev/null; true
