"""Per-ASV importances of a trained model (``importance.tsv``), in q2-sample-classifier's
ImportanceFormat: a header line, then ``feature<TAB>value[<TAB>value...]`` per ASV, every value
a number.

Columns, after ``feature`` (the feature table's ID of the ASV):

- ``importance``: the L2 norm of the ASV's weights in the target head's linear base
  (``linear_head``): its weight on log1p(count) / log1p(depth) and its weight on presence
  (absent from checkpoints written before that term), over every output (class). These are on
  the head's output scale (standardised targets for regression, logits for classification), not
  an attribution of the transformer's prediction: an ASV the network relies on may still have
  small linear weights.
- ``random_forest``: the baseline forest's ``feature_importances_`` (mean decrease in
  impurity), when the forest ran.

Rows are the ASVs with reads in the train split (the model's vocabulary), sorted by the first
column descending (ties keep the table's order). A column that does not exist is left out; with
neither, there is no file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from aam_core.checkpoint import Checkpoint
from aam_core.io.files import atomic_write

IMPORTANCE_FILE = "importance.tsv"
# [V + 1, out_dim] each; row 0: ASVs outside the vocabulary. The presence term is absent from
# checkpoints written before it.
LINEAR_WEIGHTS = ("target_head.linear.weight", "target_head.linear.presence")


def linear_importance(checkpoint: Checkpoint) -> np.ndarray | None:
    """``float64 [V]``: per ASV of ``checkpoint.vocabulary`` (in its order), the L2 norm of its
    linear-term weights (log abundance and presence) over the outputs; None for a model
    without the linear term (no vocabulary, or a checkpoint older than the term)."""
    found = [checkpoint.state_dict.get(key) for key in LINEAR_WEIGHTS]
    weights = [w.detach().cpu().double().numpy()[1:] for w in found if w is not None]
    if not weights or checkpoint.vocabulary is None:
        return None
    rows = np.concatenate(weights, axis=1)  # [V, terms * out_dim]
    if rows.shape[0] != len(checkpoint.vocabulary):
        raise ValueError(
            f"the linear term has {rows.shape[0]} ASV rows, the vocabulary lists "
            f"{len(checkpoint.vocabulary)} ASVs"
        )
    return np.linalg.norm(rows, axis=1)  # [V]


def importance_frame(
    features: Sequence[str],
    *,
    importance: np.ndarray | None = None,
    random_forest: np.ndarray | None = None,
) -> pd.DataFrame | None:
    """The table ``importance.tsv`` holds, indexed by ``feature``; None without a column or
    without features. Each column is ``[len(features)]``, finite."""
    columns = {
        name: np.asarray(values, dtype=np.float64)
        for name, values in (("importance", importance), ("random_forest", random_forest))
        if values is not None
    }
    if not columns or not features:
        return None
    for name, values in columns.items():
        if values.shape != (len(features),):
            raise ValueError(
                f"{name} holds {values.shape} values, expected one per feature ({len(features)})"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} holds non-finite values")
    bad = [f for f in features if "\t" in f or "\n" in f or "\r" in f]
    if bad:
        raise ValueError(f"feature IDs may not hold tabs or line breaks, got {bad[:3]!r}")
    frame = pd.DataFrame(columns, index=pd.Index(list(features), name="feature"))
    first = next(iter(columns))
    return frame.sort_values(first, ascending=False, kind="mergesort")


def write_importance(path: str | Path, frame: pd.DataFrame) -> None:
    """``frame`` (from :func:`importance_frame`) as TSV; values written as the shortest text
    that reads back as the same float64."""
    with atomic_write(path) as fh:
        fh.write("\t".join([str(frame.index.name), *map(str, frame.columns)]) + "\n")
        for feature, values in zip(frame.index, frame.to_numpy(), strict=True):
            fh.write("\t".join([str(feature), *(repr(float(v)) for v in values)]) + "\n")
