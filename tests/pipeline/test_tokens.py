from __future__ import annotations

import numpy as np
import pytest

from aam_core.data.tokens import PAD, tokenize
from aam_core.io.errors import SequenceError


def detokenize(tokens: np.ndarray) -> list[str]:
    """Inverse of tokenize for A/C/G/T/N (ambiguity codes come back as N)."""
    alphabet = np.array(["", "A", "C", "G", "T", "N", "?"])
    return ["".join(alphabet[row[row != PAD]]) for row in np.asarray(tokens)]


def test_codes_and_right_padding() -> None:
    tokens = tokenize(["ACGT", "acgtn", "GRY"], max_bp=6)
    assert tokens.dtype == np.uint8 and tokens.shape == (3, 6)
    np.testing.assert_array_equal(
        tokens, [[1, 2, 3, 4, 0, 0], [1, 2, 3, 4, 5, 0], [3, 5, 5, 0, 0, 0]]
    )
    assert detokenize(tokens) == ["ACGT", "ACGTN", "GNN"]


def test_too_long_is_an_error_unless_truncation_is_asked_for() -> None:
    with pytest.raises(SequenceError) as err:
        tokenize(["ACGTACGTACGTAC", "ACG"], max_bp=10)
    assert str(err.value) == (
        "1 of 2 sequences are longer than max_bp=10 (e.g. ACGTACGTACGT... (14 bp)); "
        "raise max_bp or ask for truncation"
    )
    np.testing.assert_array_equal(
        tokenize(["ACGTACGTACGTAC"], max_bp=4, truncate=True), [[1, 2, 3, 4]]
    )


def test_non_dna_never_becomes_padding() -> None:
    with pytest.raises(SequenceError) as err:
        tokenize(["ACGT", "ACXT", "hello"], max_bp=8)
    assert str(err.value) == (
        "2 sequences contain characters that are not DNA (e.g. 'ACXT', 'hello')"
    )
    with pytest.raises(SequenceError, match="1 sequences are empty"):
        tokenize(["ACGT", ""], max_bp=8)
