"""The model card's JSON document (``GET /models/{id}/card``): the schema of
aam_core.model_card's cards (card_version 1), apart from the API's other schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# The model card (aam_core.model_card, card_version 1): the JSON form of GET /models/{id}/card.
# A null value is a fact the checkpoint did not record. Validation metrics: name -> value.
CardMetricValues = dict[str, float | None]


class CardTarget(BaseModel):
    column: str | None
    task: Literal["regression", "classification"] | None
    classes: list[str] | None


class CardArchitecture(BaseModel):
    embedding_dim: int
    sample_layers: int
    nucleotide_layers: int
    heads: int
    asv_vocabulary: int = Field(description="ASVs of the train split with a learned identity")
    linear_head: bool | None
    target_pooling: str | None
    freeze_base: bool


class CardEnsemble(BaseModel):
    choice: Literal["aam", "forest", "ensemble"]
    weight: float = Field(description="of AAM; the random forest gets 1 - weight")
    forest_params: dict[str, Any]
    n_forest_features: int
    reason: str


class CardModel(BaseModel):
    kind: Literal["encoder", "regressor", "classifier"]
    type: Literal["aam", "ensemble"]
    target: CardTarget | None
    architecture: CardArchitecture
    preprocessing: dict[str, Any] = Field(
        description="max_bp, token_limit, truncate, rarefaction_depth"
    )
    ensemble: CardEnsemble | None
    checkpoint_sha256: str | None
    format_version: int
    aam_version: str = Field(description="the aam version that wrote the checkpoint")


class CardSamples(BaseModel):
    input: int | None
    used: int | None
    train: int | None
    validation: int | None
    missing_target: int | None
    below_rarefaction_depth: int | None
    unseen_class: int | None = Field(description="validation samples of a class train lacks")


class CardSubjects(BaseModel):
    column: str = Field(description="the group column (e.g. host subject)")
    train: int | None
    validation: int | None


class CardData(BaseModel):
    sha256: dict[str, str] | None = Field(description="input file role -> SHA-256")
    samples: CardSamples
    n_features: int | None
    subjects: CardSubjects | None
    target: dict[str, dict[str, Any]] | None = Field(
        description="per split: n, mean, std, min, max (regression) or class -> count"
    )


class CardSplit(BaseModel):
    method: str | None = Field(description="random, stratified, grouped or stratified+grouped")
    validation_fraction: float | None
    group_column: str | None
    seed: int | None
    sha256: str | None = Field(description="SHA-256 of the run's split.tsv")
    n_train: int | None
    n_validation: int | None


class CardEpochs(BaseModel):
    best: int | None
    final: int | None
    max: int | None
    monitor: str | None


class CardBaseModel(BaseModel):
    kind: str | None
    sha256: str | None = Field(description="SHA-256 of the encoder's checkpoint file")
    freeze_base: bool | None


class CardTraining(BaseModel):
    stage: Literal["pretrain", "train"] | None
    seed: int | None
    split: CardSplit
    epochs: CardEpochs
    device: str | None
    world_size: int | None
    base_model: CardBaseModel | None
    config: dict[str, Any] | None = Field(description="every run setting")


class CardBaselines(BaseModel):
    random_forest: CardMetricValues | None
    constant: CardMetricValues | None = Field(description="the train split's mean or shares")
    # A default, so that card.json files written before the depth check still validate.
    depth: CardMetricValues | None = Field(
        default=None, description="log(reads per sample) alone, before rarefaction"
    )


class CardDepthConfound(BaseModel):
    """Whether sequencing depth alone predicts the target (aam_core.train.baselines)."""

    confounded: bool
    metric: Literal["roc_auc", "r2"] = Field(description="the metric judged")
    depth: float = Field(description="the depth-only model's validation value")
    model: float | None = Field(description="the model's validation value")
    reason: str = Field(description="which rule decided, either way")
    message: str | None = Field(description="the warning; null when not confounded")


class CardMetrics(BaseModel):
    split: Literal["validation"]
    epoch: int | None
    monitor: str | None
    model: CardMetricValues | None = Field(description="the served model")
    aam_alone: CardMetricValues | None = Field(description="an ensemble's AAM part")
    baselines: CardBaselines
    train: CardMetricValues | None = Field(description="the model on its own train split")
    depth_confound: CardDepthConfound | None = Field(
        default=None, description="null for checkpoints written before the depth check"
    )


class CardCrossValidatedModel(BaseModel):
    per_sample: CardMetricValues = Field(description="metric -> mean over the test folds")
    subject_weighted: CardMetricValues = Field(description="the same, each subject weighted once")


class CardDifference(BaseModel):
    """AAM minus another model in the primary metric, paired fold by fold."""

    metric: str
    mean: float | None
    low: float | None = Field(description="bootstrap 95% interval, low end")
    high: float | None = Field(description="bootstrap 95% interval, high end")
    better: Literal["aam", "other", "neither"] | None = Field(
        description="the side of zero the whole interval lies on; neither: it spans zero"
    )


class CardCrossValidationDepth(BaseModel):
    flagged: bool | None = Field(description="whether sequencing depth alone predicts the target")
    message: str | None


class CardCrossValidation(BaseModel):
    """The cross-validation of a cross_validate job whose refit trained this model
    (aam_core.crossval.report.card_summary): every figure is out-of-fold."""

    folds: int
    repeats: int
    n_samples: int
    n_groups: int
    group_column: str | None = Field(description="null: each sample its own group")
    primary_metric: Literal["mae", "roc_auc"]
    models: dict[str, CardCrossValidatedModel] = Field(
        description="aam, forest, linear, constant, depth, ..."
    )
    differences: dict[str, CardDifference] = Field(description='"aam-<model>" -> the difference')
    depth_confound: CardCrossValidationDepth


class ModelCard(BaseModel):
    """A model card, from the model's checkpoint alone (aam_core.model_card)."""

    card_version: int
    model: CardModel
    intended_use: list[str]
    limits: list[str]
    data: CardData
    training: CardTraining
    metrics: CardMetrics
    # A default, so that card.json files written before cross-validation still validate.
    cross_validation: CardCrossValidation | None = Field(
        default=None, description="null unless a cross_validate job's refit trained the model"
    )
    library_versions: dict[str, str | None] | None
