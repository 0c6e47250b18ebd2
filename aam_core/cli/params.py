"""The options the ``aam`` commands share, as annotated types (typer reads the option's name
and help from the annotation), and those of ``aam cross-validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

Opt = typer.Option
Table = Annotated[Path, Opt("--table", help="Feature table: BIOM (HDF5 or JSON) or .qza.")]
Tree = Annotated[Path | None, Opt("--tree", help="Rooted Newick tree or .qza phylogeny.")]
Metadata = Annotated[Path, Opt("--metadata", help="QIIME-style sample metadata TSV.")]
Sequences = Annotated[
    Path | None, Opt("--sequences", help="Representative sequences (FASTA or .qza).")
]
# A checkpoint file. --model is its old name (it now names a model kind in aam train and aam
# cross-validate), still accepted for one release.
Checkpoint = Annotated[
    Path,
    Opt("--checkpoint", "--model", help="A checkpoint written by aam train (--model: old name)."),
]
Task = Annotated[Literal["regression", "classification"], Opt("--task")]
TargetColumn = Annotated[str, Opt("--target", help="Metadata column to predict.")]
ConfigFile = Annotated[
    Path | None, Opt("--config", help="TOML, YAML or JSON file of run settings.")
]
Device = Annotated[str, Opt("--device", help="auto, cpu, cuda or cuda:N.")]
PredictPrecision = Annotated[
    Literal["fp32", "fp64"],
    Opt(
        "--precision",
        help="fp32: the same sample gives the same value within 1e-5 relative in any table; "
        "fp64: exact, bit for bit, two to three times the time on a CPU.",
    ),
]
Resume = Annotated[bool, Opt("--resume", help="Continue from OUT/checkpoints/last.pt.")]
Events = Annotated[Path | None, Opt("--events", help="Append every event as a JSON line.")]
StopPath = Annotated[Path | None, Opt("--stop-file", help="Stop cleanly once this file exists.")]
Quiet = Annotated[bool, Opt("--quiet", help="No progress bar or log lines.")]
Out = Annotated[Path, Opt("--out", help="Run directory.")]

# aam cross-validate
CvOut = Annotated[
    Path,
    Opt(
        "--out",
        help="Run directory. The folds finished there are kept: the same command continues a "
        "stopped run.",
    ),
]
Group = Annotated[
    str | None,
    Opt(
        "--group",
        help="Metadata column of subjects: a subject's samples stay in one fold. Default: every "
        "sample is its own subject.",
    ),
]
Folds = Annotated[int, Opt("--folds", help="Outer folds (2 to 20).")]
Repeats = Annotated[int, Opt("--repeats", help="Repeats, each with its own shuffle (1 to 10).")]
Models = Annotated[str, Opt("--models", help="Models to compare, separated by commas.")]
PretrainFolds = Annotated[
    bool, Opt("--pretrain", help="AAM starts from an encoder pretrained on each training fold.")
]
MinReads = Annotated[int, Opt("--min-reads", help="Leave out the samples with fewer reads.")]
CvModel = Annotated[
    Literal["aam", "ensemble"] | None,
    Opt(
        "--model",
        help="aam (default); ensemble: AAM blended with a random forest on each fold's "
        "validation split is compared too (and refitted with --refit).",
    ),
]
Refit = Annotated[
    bool,
    Opt(
        "--refit",
        help="Then train the final model on every sample, in OUT/refit; its checkpoint cites "
        "the cross-validated figures. (The recipe's refit setting is a --config key.)",
    ),
]
