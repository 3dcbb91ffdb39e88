"""Metanetwork resources and training requests as the API shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.ids import RecordId
from app.jobs.schemas import register_result
from app.metanetworks.service import NAME_PATTERN


class MetanetworkOut(BaseModel):
    name: str = Field(description="the name to ask it by")
    task: str = Field(description="classification or generalization")
    labels: list[str] = Field(description="class labels (classification)")
    domain: dict[str, Any] = Field(description="the networks it was trained on")
    metrics: dict[str, Any] = Field(description="measured on held-out zoo splits")
    version: str = Field(description="card version + sha256 prefix of the weights")
    version_number: int = Field(description="N of name@N; `name` alone is the latest")
    builtin: bool = Field(description="shipped with the service (seen by every tenant)")
    status: str = Field(description="`ready`: a version exists only with its weights")
    zoo_id: int | None = Field(description="the zoo it was trained on (trained ones)")
    job_id: int | None = Field(description="the train job that made it (trained ones)")
    created_at: dt.datetime = Field(description="when this version was registered (UTC)")


class MetanetworkDetail(MetanetworkOut):
    card: dict[str, Any] = Field(description="the whole card")


class TrainingConfig(BaseModel):
    """The metanetwork's size and its training; every knob has a range."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(default=32, ge=4, le=256, description="node feature width")
    edge_hidden: int = Field(default=16, ge=2, le=128, description="edge feature width")
    layers: int = Field(
        default=3,
        ge=0,
        le=8,
        description="message-passing layers (0: only the readouts below read the network)",
    )
    max_kernel: int = Field(
        default=9,
        ge=1,
        le=49,
        description="edge feature width: a kernel of at most this many entries is read as it "
        "is, a larger one area-resampled to the largest square that fits (a 7×7 stem at 9: "
        "3×3)",
    )
    fourier: int = Field(
        default=16, ge=1, le=64, description="Fourier features of each scalar weight"
    )
    dropout: float = Field(default=0.1, ge=0.0, le=0.5, description="dropout of the layers")
    layer_stats: bool = Field(
        default=True, description="also read per-layer weight statistics beside the graph"
    )
    scale_invariant: bool = Field(
        default=False,
        description="read each network's canonical form under ReLU scaling and sign flips",
    )
    triggers: int = Field(
        default=0,
        ge=0,
        le=100,
        description="backdoor screening of 8×8-image CNNs: Adam steps of a trigger search "
        "(for every window and class, a patch fitted to send fixed digits to the class; the "
        "best attack rates are read); 0 turns it off. Searched once per item before training: "
        "about a second per network on a CPU core",
    )
    trigger_window: int = Field(
        default=3, ge=1, le=8, description="side of the square patch the trigger search fits"
    )
    queries: int = Field(
        default=0,
        ge=0,
        le=256,
        description="learned query images run through each network (CNNs on square images, "
        "MLPs on flat inputs of query_side² values), its answers read beside the graph; 0 "
        "turns them off. At query_side 8 they start as sklearn digits",
    )
    query_side: int = Field(
        default=8, ge=1, le=32, description="side of the query images (inputs of side² values)"
    )
    query_classes: bool = Field(
        default=False,
        description="read the answers class by class (output c means the same class in every "
        "network of the zoo) instead of symmetrically in the classes",
    )
    batch_size: int = Field(default=64, ge=1, le=1024, description="networks per step")
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0, description="AdamW weight decay")
    warmup_epochs: int = Field(
        default=3, ge=0, le=100, description="epochs of linear learning-rate warm-up"
    )
    patience: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="epochs without a better validation metric before stopping early",
    )
    noise: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="augmentation: Gaussian noise added to weights, relative to their scale",
    )
    weight_dropout: float = Field(
        default=0.05, ge=0.0, le=0.9, description="augmentation: fraction of weights zeroed"
    )
    rank_loss: float = Field(
        default=1.0,
        ge=0.0,
        le=10.0,
        description="regression: weight of the pairwise ranking loss beside the squared error",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="seed of the training run")
    coverage: float = Field(
        default=0.9, ge=0.5, le=0.99, description="target coverage of the conformal intervals"
    )


class TrainRequest(BaseModel):
    """``POST /v1/metanetworks``: train metanetwork ``name`` (a new version when it exists)
    on zoo ``zoo_id``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=128,
        examples=["my-classifier"],
        description="the metanetwork's name; training it again makes version N+1",
    )
    zoo_id: RecordId = Field(description="the zoo to train on (one of the caller's)")
    epochs: int = Field(default=50, ge=1, le=1000, description="at most this many epochs")
    time_budget_s: float | None = Field(
        default=None, gt=0, le=7 * 86400, description="stop after this many seconds of training"
    )
    config: TrainingConfig = Field(
        default_factory=TrainingConfig, description="the metanetwork's size and training"
    )


class TrainParams(TrainRequest):
    """The ``train`` job's params: the request and the tenant that made it."""

    tenant_id: RecordId = Field(description="the tenant that asked (set by the service)")


class DeletedOut(BaseModel):
    name: str = Field(description="the metanetwork")
    versions: list[int] = Field(description="the version numbers deleted")


class TrainResult(BaseModel):
    """What a ``train`` job produced: version ``version`` of ``metanetwork`` (its card has
    the rest)."""

    model_config = ConfigDict(extra="allow")

    metanetwork: str = Field(description="the metanetwork's name")
    version: int = Field(description="the version made: ask it as name@version")
    zoo_id: int = Field(description="the zoo it was trained on")
    metrics: dict[str, Any] = Field(description="metrics on the zoo's val and test splits")
    baseline: dict[str, Any] = Field(
        description="the statistics baseline's test metrics on the same split"
    )
    conformal: dict[str, Any] = Field(description="interval width and measured test coverage")
    epochs_run: int = Field(description="epochs trained")
    best_epoch: int = Field(description="the epoch whose weights were kept")
    stopped: Any = Field(description="why training stopped")
    resumed_from_epoch: int = Field(description="the epoch this attempt resumed from (0: none)")
    attempt: int = Field(description="the attempt that finished the job")
    seconds: float = Field(description="seconds the finishing attempt trained")


register_result("train", TrainResult)
