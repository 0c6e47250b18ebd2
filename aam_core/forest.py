"""The random forest of an ensemble model, kept inside its checkpoint file.

An ensemble predicts ``weight * AAM + (1 - weight) * forest`` (probabilities for a classifier).
The forest is a scikit-learn random forest on relative abundances of the ASVs seen in
training, stored with skops (bytes in a ``uint8`` tensor, so that the checkpoint still loads
with ``torch.load(weights_only=True)``), and read back allowing only scikit-learn's tree types:
no code in a user's file ever runs.

scikit-learn and skops are imported when a forest is read or written, so that a process that
never meets an ensemble (the API at start-up) does not load them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from aam_core.errors import UserError

CHOICES = ("aam", "forest", "ensemble")
# skops refuses every type it does not trust by default except these (the trees of a forest).
TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)
NODE_BYTES = 64  # a scikit-learn tree node: children, feature, threshold, impurity, counts


class ForestError(UserError):
    """An ensemble checkpoint whose forest part is missing, malformed or untrusted."""

    problem = "invalid-checkpoint"


@dataclass(frozen=True, eq=False)
class ForestPart:
    """What an ensemble checkpoint holds besides the AAM weights."""

    weight: float  # of the AAM prediction; the forest gets 1 - weight
    choice: str  # "ensemble", or with model "auto" possibly "aam" or "forest" alone
    features: tuple[str, ...]  # the forest's columns: ASV sequences, uppercase DNA
    task: str  # regression | classification
    forest: Any  # the fitted scikit-learn forest
    params: Mapping[str, Any]  # its hyperparameters, for the record
    reason: str  # why this weight: the validation scores it was chosen on

    def to_payload(self) -> dict[str, Any]:
        """Plain values and tensors for the checkpoint (``weights_only`` loading)."""
        import skops.io

        blob = np.frombuffer(skops.io.dumps(self.forest), dtype=np.uint8)
        return {
            "weight": float(self.weight),
            "choice": self.choice,
            "features": list(self.features),
            "task": self.task,
            "forest": torch.from_numpy(blob.copy()),  # [n_bytes] uint8
            "params": {k: v for k, v in self.params.items()},
            "reason": self.reason,
        }

    @classmethod
    def from_payload(cls, payload: Any, *, file: str) -> ForestPart:
        """Check and read a checkpoint's ``ensemble`` section; ForestError naming ``file``."""
        import skops.io

        try:
            weight = float(payload["weight"])
            choice = str(payload["choice"])
            features = tuple(str(f) for f in payload["features"])
            task = str(payload["task"])
            blob = payload["forest"]
            if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8:
                raise TypeError("the forest is not a uint8 tensor")
            data = blob.numpy().tobytes()
            untrusted = set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES)
            if untrusted:
                raise ForestError(
                    f"its forest holds types that are not a scikit-learn forest "
                    f"({', '.join(sorted(untrusted)[:3])}); refused",
                    file=file,
                )
            forest = skops.io.loads(data, trusted=list(TRUSTED_TYPES))
        except ForestError:
            raise
        except Exception as exc:  # KeyError, TypeError, skops' own errors: all "malformed"
            raise ForestError(f"its ensemble section is unreadable ({exc})", file=file) from None
        if not 0.0 <= weight <= 1.0 or choice not in CHOICES:
            raise ForestError(
                f"its ensemble weight {weight} or choice {choice!r} is invalid", file=file
            )
        if getattr(forest, "n_features_in_", len(features)) != len(features):
            raise ForestError("its forest does not match its feature list", file=file)
        return cls(
            weight=weight,
            choice=choice,
            features=features,
            task=task,
            forest=forest,
            params=dict(payload.get("params") or {}),
            reason=str(payload.get("reason") or ""),
        )

    def memory_bytes(self) -> int:
        """The trees' node and value arrays (what a loaded forest holds)."""
        total = 0
        for tree in getattr(self.forest, "estimators_", []):
            state = tree.tree_
            total += state.node_count * NODE_BYTES + state.value.nbytes
        return total

    def predict(
        self, counts: sp.csr_matrix, sequences: Sequence[str], n_classes: int = 0
    ) -> np.ndarray:
        """The forest's predictions for samples ``counts [n, len(sequences)]``: values ``[n]``
        (regression) or probabilities ``[n, n_classes]`` over the model's class indices (a
        class the forest never saw gets 0)."""
        x = forest_inputs(counts, sequences, self.features)
        if self.task == "regression":
            return np.asarray(self.forest.predict(x), dtype=np.float64).reshape(x.shape[0])
        out = np.zeros((x.shape[0], n_classes), dtype=np.float64)  # [n, K]
        out[:, np.asarray(self.forest.classes_, dtype=np.int64)] = self.forest.predict_proba(x)
        return out


def forest_inputs(
    counts: sp.csr_matrix, sequences: Sequence[str], features: Sequence[str]
) -> sp.csr_matrix:
    """Relative abundances of ``counts [n, len(sequences)]`` in the columns ``features``
    (uppercase DNA; sequences match in any case): an ASV the forest never saw adds to the
    sample's depth but has no column."""
    column = {seq: j for j, seq in enumerate(features)}
    source = np.array([column.get(seq.upper(), -1) for seq in sequences], dtype=np.int64)
    counts = sp.csr_matrix(counts, dtype=np.float64)
    depth = np.asarray(counts.sum(axis=1)).ravel()  # [n]
    keep = source >= 0
    picked = counts[:, np.flatnonzero(keep)]  # [n, n_known]
    moved = sp.csr_matrix(
        (np.ones(keep.sum()), (np.arange(keep.sum()), source[keep])),
        shape=(int(keep.sum()), len(features)),
    )  # [n_known, n_features]: each known ASV to its column
    scale = np.divide(1.0, depth, out=np.zeros_like(depth), where=depth > 0)
    return sp.csr_matrix(sp.diags(scale) @ (picked @ moved))  # [n, n_features]
