"""Prediction's two precisions on one device: prints one JSON object.

    python bench/predict_precision.py [--device cuda] [--samples 2000]

A ``default()`` regressor (random weights: speed does not depend on training) predicts a
generated table (about 150 ASVs of 150 bp per sample) the way a predict job does (one
``Predictor.predict`` over the whole table, no service cache), at ``fp32`` and at ``fp64`` (the
exact mode), after one warm-up call on a few samples. Reports each precision's seconds and
samples a second, and how far the fp32 values lie from the exact ones, in the units of the
contract (aam_core.predict.RELATIVE_TOLERANCE: |fp32 - fp64| / max(|value|, target scale)).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from aam_core.checkpoint import checkpoint_from_model
from aam_core.data.synthetic import SyntheticSpec, generate
from aam_core.model import AAMConfig, SequenceRegressor, TargetConfig
from aam_core.predict import RELATIVE_TOLERANCE, Predictor
from aam_core.train.distributed import resolve_device

PREPROCESSING = {"max_bp": 150, "token_limit": 256, "truncate": False, "rarefaction_depth": 2000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--asvs", type=int, default=20000, help="distinct ASVs of the study")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    config = AAMConfig.default().with_target(TargetConfig(task="regression"))
    model = SequenceRegressor(config).eval()
    checkpoint = checkpoint_from_model(
        model, preprocessing=PREPROCESSING, target={"column": "age", "task": "regression"}
    )
    spec = SyntheticSpec(n_samples=args.samples, n_asvs=args.asvs, asvs_per_sample=150, seed=0)
    table = generate(spec).table
    warm = table.subset_samples(np.arange(min(4, args.samples)))
    values: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for precision in ("fp32", "fp64"):
        predictor = Predictor(checkpoint, device=device, precision=precision)
        predictor.predict(warm, warm.feature_ids)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = predictor.predict(table, table.feature_ids)
        seconds[precision] = time.perf_counter() - start
        values[precision] = np.array([s.prediction[0] for s in result.samples if s.prediction])
    scale = float(model.target_norm.std[0])
    exact, fast = values["fp64"], values["fp32"]
    distance = np.abs(fast - exact) / np.maximum(np.abs(exact), scale)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    report = {
        "benchmark": "predict_precision",
        "device": str(device),
        "device_name": name,
        "torch_threads": torch.get_num_threads(),
        "samples": args.samples,
        "distinct_asvs": args.asvs,
        **{
            precision: {
                "seconds": round(took, 2),
                "samples_per_second": round(args.samples / took, 1),
            }
            for precision, took in seconds.items()
        },
        "fp64_over_fp32_time": round(seconds["fp64"] / seconds["fp32"], 2),
        "fp32_vs_fp64_max": float(distance.max()),
        "contract": RELATIVE_TOLERANCE,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
