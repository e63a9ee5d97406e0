"""The typed sections of params.yaml that do not depend on the model family (the family sections live with
their families in `gen_platform.models`; `gen_platform.config` assembles the whole). Unknown keys are errors,
so a typo fails loudly instead of being ignored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


# Below this, FD/KID/precision/recall in a 128-dimensional feature space are more noise than measurement.
MIN_METRIC_SAMPLES = 100


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    dataset: str = Field("digits", pattern=r"^[a-z0-9][a-z0-9_-]*$", description="file data/raw/<dataset>.npz")
    image_size: int = Field(8, ge=4, le=256)
    channels: Literal[1, 3] = 1
    num_classes: int = Field(10, ge=1, le=1000)


class SplitParams(Section):
    seed: int = 0
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)


class DriftParams(Section):
    """How far a new data version may move from the data last accepted for the same registered model."""

    enabled: bool = True
    channel_mean: float = Field(0.05, ge=0, le=1, description="absolute change of a channel's mean pixel (0-1 scale)")
    channel_std: float = Field(0.05, ge=0, le=1, description="absolute change of a channel's pixel spread")
    sharpness: float = Field(0.25, ge=0, description="relative change of the mean neighbouring-pixel difference")
    class_fraction: float = Field(0.05, ge=0, le=1, description="absolute change of any class's share")


class ValidationParams(Section):
    min_rows: int = Field(100, ge=1)
    max_rows: int = Field(10_000_000, ge=1)
    min_class_fraction: float = Field(0.02, ge=0, le=1)
    max_class_fraction: float = Field(0.5, ge=0, le=1)
    max_duplicate_fraction: float = Field(0.01, ge=0, le=1)
    drift: DriftParams = DriftParams()

    @model_validator(mode="after")
    def _ordered(self) -> ValidationParams:
        if self.min_rows > self.max_rows:
            raise ValueError(f"min_rows ({self.min_rows}) must not exceed max_rows ({self.max_rows})")
        if self.min_class_fraction > self.max_class_fraction:
            raise ValueError("min_class_fraction must not exceed max_class_fraction")
        return self


class TrainParams(Section):
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536, description="global batch, shared by the workers")
    seed: int = 0
    num_workers: int = Field(1, ge=1, le=1024)
    use_gpu: bool | Literal["auto"] = Field(False, description="true, false, or auto: GPUs if the cluster has enough")
    cpus_per_worker: float = Field(2.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="forward passes under autocast: auto = bf16 on GPUs that have it, fp16 (with a "
        "gradient scaler) on older GPUs, fp32 on CPUs")
    sync_batch_norm: bool = Field(True, description="batch norm statistics over all workers' batches, so results "
                                  "do not depend on how many workers share the global batch")
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the networks (pays a compile time up front)")
    storage_path: str = Field("ray_results", description="checkpoint storage (relative to the repo, or absolute/URI)")
    max_failures: int = Field(1, ge=0, description="worker failures survived by restoring the last checkpoint")
    resource_timeout_s: float = Field(900, gt=0, le=86_400, description="on a Ray cluster, how long a training or "
                                      "search waits for its workers' resources (the autoscaler adding nodes) "
                                      "before it fails naming what is missing")
    validation_images: int = Field(2000, ge=10, description="per-epoch validation uses this many images of the "
                                   "validation split: memory and time per epoch stay flat as the dataset grows")


class ClassifierParams(Section):
    """The domain classifier whose features every distribution metric uses."""
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    feature_dim: int = Field(128, ge=2, le=4096)
    seed: int = 0


class EvaluateParams(Section):
    batch_size: int = Field(256, ge=1)
    num_samples: int = Field(64, ge=1, le=1024, description="images in the logged sample grid")
    metric_samples: int = Field(1000, ge=MIN_METRIC_SAMPLES, description="real and generated images behind fd, kid, "
                                "precision/recall/density/coverage (the reference split must hold this many)")
    reference_split: Literal["train", "test"] = Field("train", description="where the real images of those metrics "
                                                       "come from: train (large) or test (unseen, often small)")
    confidence: float = Field(0.95, ge=0.5, lt=1, description="level of every bootstrap interval: the logged FD "
                              "interval and the champion rule's interval of the improvement")
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000, description="bootstrap replicates of those intervals")
    nearest_k: int = Field(5, ge=1, le=100, description="k of precision/recall/density/coverage")
    nll_importance_samples: int = Field(100, ge=1, le=10_000, description="k of the importance-weighted NLL")
    inception_weights: str | None = Field(None, description="TorchScript Inception-v3 for standard `fid` "
                                          "(path relative to the repository; nothing is downloaded)")
    copy_quantile: float = Field(0.01, gt=0, lt=1, description="a sample closer to a training image than this "
                                 "quantile of test-to-training neighbour distances counts as a copy (`copy_rate`)")
    seed: int = 0


class TuneParams(Section):
    trials: int = Field(8, ge=1, le=1024)
    max_epochs: int = Field(4, ge=1, le=1000, description="epochs of a trial that ASHA never stops")
    grace_epochs: int | None = Field(None, ge=1, description="epochs before ASHA may stop a trial (default per family)")
    optuna: bool = Field(False, description="Optuna TPE instead of random search")
    workers_per_trial: int = Field(1, ge=1, le=1024, description="Ray Train workers of each trial")
    cpus_per_worker: float = Field(0.9, gt=0, description="fractional so trial drivers fit beside workers")
    time_budget_s: int = Field(3600, ge=10, description="a search never runs longer than this")
    seed: int = 0


class RegistryParams(Section):
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    min_improvement: float = Field(0.0, ge=0, description="a challenger is promoted only when the lower bound of "
                                   "its improvement's confidence interval is above this (nats/image for a VAE)")

    max_copy_rate: float | None = Field(None, ge=0, le=1, description="never promote a model whose `copy_rate` "
                                        "is above this (off when null)")
