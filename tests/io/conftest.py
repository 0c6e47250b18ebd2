"""Factories for the io tests: small BIOM tables and QIIME 2 archives written to a tmp dir."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import biom
import h5py
import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
UUID = "0b8f7e52-9a51-4c1e-8d37-2f0c5a6b7d81"

TableFactory = Callable[..., Path]
QzaFactory = Callable[..., Path]


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def hdf5_table(tmp_path: Path) -> TableFactory:
    """Write ``counts`` (samples x features, the FeatureTable layout) as BIOM 2.1 HDF5."""

    def factory(
        counts: Sequence[Sequence[float]],
        features: Sequence[str],
        samples: Sequence[str],
        name: str = "table.biom",
    ) -> Path:
        path = tmp_path / name
        table = biom.Table(np.asarray(counts, dtype=float).T, list(features), list(samples))
        with h5py.File(path, "w") as h5:
            table.to_hdf5(h5, "tests")
        return path

    return factory


@pytest.fixture
def json_table(tmp_path: Path) -> TableFactory:
    """Write ``counts`` (samples x features) as BIOM 1.0 JSON."""

    def factory(
        counts: Sequence[Sequence[float]],
        features: Sequence[str],
        samples: Sequence[str],
        name: str = "table.json",
    ) -> Path:
        path = tmp_path / name
        table = biom.Table(np.asarray(counts, dtype=float).T, list(features), list(samples))
        path.write_text(table.to_json("tests"))
        return path

    return factory


@pytest.fixture
def make_qza(tmp_path: Path) -> QzaFactory:
    """A QIIME 2-shaped zip: ``<uuid>/metadata.yaml`` declaring ``semantic_type`` (none when
    it is None) and ``<uuid>/<member>`` for each member; a name starting with '!' is stored
    exactly as given (after the '!')."""

    def factory(
        semantic_type: str | None,
        members: dict[str, bytes],
        *,
        name: str = "x.qza",
        compression: int = zipfile.ZIP_DEFLATED,
    ) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            zf.writestr(f"{UUID}/VERSION", "QIIME 2\narchive: 5\nframework: 2024.2.0\n")
            if semantic_type is not None:
                meta = f"uuid: {UUID}\ntype: {semantic_type}\nformat: SomeDirFmt\n"
                zf.writestr(f"{UUID}/metadata.yaml", meta)
            for member, payload in members.items():
                stored = member[1:] if member.startswith("!") else f"{UUID}/{member}"
                zf.writestr(stored, payload)
        return path

    return factory


@pytest.fixture
def qza_uuid() -> str:
    """The root directory of archives built by ``make_qza`` (member names carry it)."""
    return UUID
