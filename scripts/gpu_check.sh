#!/usr/bin/env bash
# make gpu-check: every check that needs a CUDA device, as one prepared script.
#
#   1. the conformance suite on cuda (and cpu), derandomized (HYPOTHESIS_PROFILE=ci)
#   2. the benchmark on cuda (scripts/bench.py --device cuda)
#   3. about a minute of training on CIFAR-shaped data (50,000 random 3x32x32 images in the
#      converted layout, --dataset cifar10) with --fast-kernels, then sampling from its checkpoint
#
# Everything it writes goes to $GPU_CHECK_OUT (default gpu-check/): conformance.txt,
# bench-cuda.json, train/ (the run folder) and samples.png. PY selects the interpreter
# (default .venv/bin/python; on a machine whose python3 already has torch with CUDA, PY=python3).
# GPU_CHECK_STAGES (default "1 2 3") runs a subset; GPU_CHECK_STEPS sets the training steps.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${GPU_CHECK_OUT:-gpu-check}
STEPS=${GPU_CHECK_STEPS:-3000}
STAGES=${GPU_CHECK_STAGES:-1 2 3}
want() { [[ " $STAGES " == *" $1 "* ]]; }
mkdir -p "$OUT"
status=0

if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: no CUDA device is visible to $PY; gpu-check needs one" >&2
    exit 2
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))'

if want 1; then
echo "== 1. conformance on cuda"
start=$(date +%s)
DIFFSPEC_DEVICES=cpu,cuda HYPOTHESIS_PROFILE=ci "$PY" -m pytest conformance -q -p no:cacheprovider \
    2>&1 | tee "$OUT/conformance.txt" | tail -n 15 || status=1
echo "conformance wall time: $(( $(date +%s) - start )) s"
fi

if want 2; then
echo "== 2. benchmark on cuda"
"$PY" scripts/bench.py --device cuda --out "$OUT/bench-cuda.json" --skip-conformance ${GPU_CHECK_BENCH_ARGS:-} || status=1
fi

if want 3; then
echo "== 3. training on CIFAR-shaped data ($STEPS steps, --fast-kernels)"
rm -rf "$OUT/cifar-shaped" "$OUT/train"
"$PY" - "$OUT/cifar-shaped" <<'PYEOF' || status=1
import sys
import numpy as np
from runtime.data.datasets import save_folder
rng = np.random.default_rng(0)
arrays = {
    "train_x.npy": rng.random((50000, 3, 32, 32), dtype=np.float32),
    "train_y.npy": rng.integers(0, 10, 50000).astype(np.int64),
    "test_x.npy": rng.random((1000, 3, 32, 32), dtype=np.float32),
    "test_y.npy": rng.integers(0, 10, 1000).astype(np.int64),
}
save_folder(sys.argv[1], arrays)
print("wrote", sys.argv[1])
PYEOF
start=$(date +%s)
"$PY" -m runtime.train --dataset cifar10 --data-dir "$OUT/cifar-shaped" --device cuda \
    --fast-kernels --steps "$STEPS" --batch-size 256 --out "$OUT/train" || status=1
echo "training wall time: $(( $(date +%s) - start )) s"
"$PY" -m runtime.sample --checkpoint "$OUT/train/checkpoint.pt" --sampler ddim --steps 50 \
    --n 64 --seed 0 --out "$OUT/samples.png" || status=1
"$PY" - "$OUT/train/train_log.json" <<'PYEOF' || status=1
import json, sys
notes = json.load(open(sys.argv[1]))["notes"]
print({k: notes[k] for k in ("device", "steps", "steps_per_s", "train_time_s", "final_loss")})
PYEOF
rm -rf "$OUT/cifar-shaped"
fi
echo "gpu-check finished with status $status"
exit $status
