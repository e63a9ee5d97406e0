from gen_platform.validation.suite import ExpectationOutcome, ValidationReport, validate_splits

__all__ = ["ExpectationOutcome", "ValidationReport", "validate_splits"]
