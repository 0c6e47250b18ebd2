"""The affine UniFrac head: d_ij = a ||z_i - z_j|| + b, its offset starting at the train split's
mean distance, its loss in units of the train split's spread; the plain head of checkpoints
written before it is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aam_core.data.batching import Collator, SampleDataset
from aam_core.data.rarefy import rarefy
from aam_core.data.synthetic import SyntheticSpec, generate
from aam_core.data.tokens import tokenize
from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.model import AAMConfig, SequenceEncoder
from aam_core.model.heads import UniFracHead
from aam_core.train.loop import evaluate_rows


def test_the_affine_head_scales_and_offsets_euclidean_distances() -> None:
    head = UniFracHead(4, affine=True)
    head.fit(torch.tensor([0.5, 0.7, 0.6, 0.8]))
    assert head.offset.item() == pytest.approx(0.65)  # starts at the mean distance
    assert head.spread() == pytest.approx(np.std([0.5, 0.7, 0.6, 0.8]))
    with torch.no_grad():
        head.log_scale.fill_(np.log(0.5))
    z = torch.tensor([[0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    d = head.distances(z)
    expected = torch.tensor([[0, 2.5, 0.5], [2.5, 0, 0.5 * 26**0.5], [0.5, 0.5 * 26**0.5, 0]])
    expected = expected + 0.65 * (1 - torch.eye(3))
    torch.testing.assert_close(d, expected.float())


def test_the_plain_head_of_older_checkpoints_is_unchanged() -> None:
    config = AAMConfig.tiny()
    assert config.unifrac_head == "euclidean"  # configs written before the field
    model = SequenceEncoder(config)
    assert not any(k.startswith("unifrac_head.") and "proj" not in k for k in model.state_dict())
    assert model.unifrac_head.spread() is None
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    torch.testing.assert_close(UniFracHead(2).distances(z), torch.tensor([[0.0, 5.0], [5.0, 0]]))
    restored = AAMConfig.from_dict({**config.to_dict(), "unifrac_head": "affine"})
    assert restored.unifrac_head == "affine"
    assert "unifrac_head.offset" in SequenceEncoder(restored).state_dict()


def test_validation_scores_every_pair_of_the_split_at_once() -> None:
    """Not only the pairs that shared a batch: R² and Pearson r over all pairs, from the
    embeddings of every sample and the exact distances of the whole split."""
    study = generate(SyntheticSpec(n_samples=30, n_asvs=80, asvs_per_sample=15, seed=9))
    table = rarefy(study.table, 1000, seed=0).table
    engine = UniFracEngine(index_branches(study.tree, table.feature_ids))
    collate = Collator(tokenize(table.feature_ids, max_bp=150), token_limit=64, engine=engine)
    torch.manual_seed(0)
    model = SequenceEncoder(AAMConfig.tiny(unifrac_head="affine")).eval()
    model.unifrac_head.fit(torch.tensor([0.4, 0.6]))
    data = SampleDataset(table)
    rows = np.arange(table.n_samples)
    tracker = evaluate_rows(
        model,
        data,
        collate,
        rows,
        batch_size=7,
        device=torch.device("cpu"),
        precision="fp32",
        keep=True,
    )  # fp32: bf16 autocast, on CPUs with native bf16, would round the embeddings
    got = tracker.summary()
    with torch.no_grad():
        z = model(collate([data[int(i)] for i in rows])).unifrac_z
        assert z is not None
        predicted = model.unifrac_head.distances(z).double().numpy()
    true = engine.unweighted(table.counts).numpy()
    i, j = np.triu_indices(rows.size, k=1)
    p, t = predicted[i, j], true[i, j]
    r2 = 1 - ((p - t) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    assert got["unifrac_r2"] == pytest.approx(r2, rel=1e-4)
    assert got["unifrac_pearson_r"] == pytest.approx(np.corrcoef(p, t)[0, 1], rel=1e-4)
    assert tracker.distance_pairs is not None and tracker.distance_pairs[0].size == i.size
