"""Model cards: what a checkpoint tells the people who use its model, as JSON and Markdown.

:func:`model_card` reads a checkpoint, and nothing else, into a JSON-able dictionary;
:func:`card_markdown` writes that dictionary as a Markdown document. ``aam card``,
``GET /models/{id}/card`` and the worker (a train or pretrain job's ``card.md`` and
``card.json`` outputs) all call these two functions, so a checkpoint downloaded from one
service and imported into another keeps its card. A fact the checkpoint does not hold (one
written before that fact was recorded) is ``null`` in JSON and "not recorded" in Markdown.

Schema, ``card_version`` 1 (fields may be added; none is renamed or dropped):

- ``model``: ``kind`` (encoder | regressor | classifier), ``type`` (aam | ensemble),
  ``target`` ``{column, task, classes}``, ``architecture`` ``{embedding_dim, sample_layers,
  nucleotide_layers, heads, asv_vocabulary, linear_head, target_pooling, freeze_base}``,
  ``preprocessing`` ``{max_bp, token_limit, truncate, rarefaction_depth}``, ``ensemble``
  ``{choice, weight, forest_params, n_forest_features, reason}``, ``checkpoint_sha256``,
  ``format_version``, ``aam_version`` (the aam that wrote the checkpoint).
- ``intended_use``, ``limits``: sentences generated from the facts below.
- ``data``: ``sha256`` (input file role -> SHA-256), ``samples`` ``{input, used, train,
  validation, missing_target, below_rarefaction_depth, unseen_class}``, ``n_features``,
  ``subjects`` ``{column, train, validation}`` (with a group column), ``target`` (per split:
  ``{n, mean, std, min, max}``, or ``class -> count``).
- ``training``: ``stage``, ``seed``, ``split`` ``{method, validation_fraction, group_column,
  seed, sha256, n_train, n_validation}`` (``sha256``: :func:`aam_core.train.provenance.
  split_sha256`, the digest of the run's ``split.tsv``), ``epochs`` ``{best, final, max,
  monitor}``, ``device``, ``world_size``, ``base_model`` ``{kind, sha256, freeze_base}``,
  ``config`` (every run setting).
- ``metrics``: ``split`` ("validation"), ``epoch``, ``monitor``, ``model`` (the served model's
  metrics on the validation split), ``aam_alone`` (an ensemble's AAM part), ``baselines``
  ``{random_forest, constant, depth}`` (the same split; ``depth``: log reads per sample
  alone), ``train`` (the model on its train split), ``depth_confound`` ``{confounded, metric,
  depth, model, reason, message}`` (:func:`aam_core.train.baselines.depth_confound`; the
  Markdown opens with a warning when ``confounded``). ``depth`` and ``depth_confound`` were
  added in card_version 1 and are null for checkpoints written before them.
- ``cross_validation``: null unless the model is the refit of a cross_validate job (the
  checkpoint's ``training["cross_validation"]``, :func:`aam_core.crossval.report.
  card_summary`): ``folds``, ``repeats``, ``n_samples``, ``n_groups``, ``group_column`` (null:
  each sample its own group), ``primary_metric`` (mae | roc_auc), ``models`` (name ->
  ``{per_sample, subject_weighted}``, each metric -> its mean over the out-of-fold test
  folds), ``differences`` (``"aam-<name>"`` -> ``{metric, mean, low, high, better}``: AAM
  minus that model in the primary metric, paired by fold, with a bootstrap 95% interval;
  ``better``: aam | other | neither), ``depth_confound`` ``{flagged, message}``. Added in
  card_version 1 (an optional key, so the version stays).
- ``library_versions``: name -> version of the training run's aam, python, torch_cuda (the
  CUDA torch was built with), torch, numpy, scipy, scikit-learn, pandas, biom-format,
  scikit-bio, h5py and skops; a null version: not installed (torch_cuda: a CPU build).

``card.py`` gathers the facts, ``text.py`` writes the sentences, ``markdown.py`` the document.
"""

from aam_core.model_card.card import CARD_VERSION, NOT_RECORDED, model_card
from aam_core.model_card.markdown import card_markdown

__all__ = ["CARD_VERSION", "NOT_RECORDED", "card_markdown", "model_card"]
