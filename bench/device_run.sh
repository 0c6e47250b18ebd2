#!/usr/bin/env bash
# The GPU checks and benchmarks, in one command for a lent GPU machine (see README): carry the
# wheels the image lacks in .whl/ (scikit-bio, biom-format, array-api-compat, decorator).
# Results land in $OUT (one JSON file per script) and on stdout.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
OUT="${OUT:-/tmp/aam-device-out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, skbio, biom; print('torch', torch.__version__, 'skbio', skbio.__version__)"
run() {
    local name=$1; shift
    local start=$SECONDS
    python3 "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
    echo "$name rc=$? seconds=$((SECONDS - start))"
    tail -c 3000 "$OUT/$name.json"; echo
    tail -n 5 "$OUT/$name.err"
}
run cuda_check bench/cuda_check.py
run model_step bench/model_step.py --steps 5 --warmup 2
run unifrac_cuda bench/unifrac.py --device cuda
run train_epoch bench/train_epoch.py --epochs 2
run model_step_b64 bench/model_step.py --batch-size 64 --steps 5 --warmup 2
