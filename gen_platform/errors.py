"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero."""


class GenPlatformError(Exception):
    """Base class: the message names the input that is wrong and what was expected."""


class ConfigError(GenPlatformError):
    """params.yaml (or an override) is missing, unreadable or invalid."""


class DataError(GenPlatformError):
    """A dataset file is missing, unreadable or not in the expected form."""


class ValidationFailed(GenPlatformError):
    """The Great Expectations suite failed; nothing downstream may run."""


class ModelLoadError(GenPlatformError):
    """A checkpoint or registered model cannot be loaded safely."""


class TrackingUnavailable(GenPlatformError):
    """The MLflow tracking server stayed unreachable for longer than a run may wait for it."""


class IncompleteRunRecord(GenPlatformError):
    """An MLflow run's record is not complete (its process died, or the store was unreachable): not registered."""


class PromotionLockTimeout(GenPlatformError):
    """Another registration held a registered model's promotion lock for longer than this one may wait."""
