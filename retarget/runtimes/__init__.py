"""What each ONNX Runtime execution provider can execute: `coverage` for a compiled ONNX model's op types."""

from retarget.runtimes.coverage import Provider, coverage, describe, op_types, providers, providers_for_vendor

__all__ = ["Provider", "coverage", "describe", "op_types", "providers", "providers_for_vendor"]
