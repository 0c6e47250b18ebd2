#!/usr/bin/env bash
# The GPU checks and benchmarks, in one command for a lent GPU machine (see README): carry the
# wheels the image lacks in .whl/ (scikit-bio, biom-format, array-api-compat, decorator).
# Results land in $OUT (one JSON file per script) and on stdout. Most wanted first: the checks,
# the training epoch at the planner's batch (64), the input pipeline, then batch 16 (the batch
# of the figures measured before issue 17: 206 pretraining samples/s on an H100).
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
run predict_precision bench/predict_precision.py --samples 2000
run train_epoch bench/train_epoch.py --epochs 2
run pipeline bench/pipeline.py --repeats 2
run train_epoch_b16 bench/train_epoch.py --epochs 2 --batch-size 16
run model_step bench/model_step.py --steps 5 --warmup 2
run unifrac_cuda bench/unifrac.py --device cuda
