"""Quantization passes on torch modules: `quantize_(model, config)`."""

from retarget.quantize.api import quantize_
from retarget.quantize.configs import (
    FloatConfig,
    Int4WeightOnlyConfig,
    Int8WeightOnlyConfig,
    IntWeightOnlyConfig,
    KeepSourceConfig,
    QuantConfig,
    config_from_name,
)
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import QuantizedWeight, quantize_rtn

__all__ = ["quantize_", "QuantConfig", "IntWeightOnlyConfig", "Int4WeightOnlyConfig", "Int8WeightOnlyConfig",
           "KeepSourceConfig", "FloatConfig", "config_from_name", "QuantLinear", "QuantizedWeight", "quantize_rtn"]
