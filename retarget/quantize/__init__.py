"""Quantization passes on torch modules: `quantize_(model, config)`."""

from retarget.quantize.api import LayerContext, quantize_, register_handler, register_transform
from retarget.quantize.calibration import LayerStats, calibration_tokens, collect_stats
from retarget.quantize.configs import (
    FloatConfig,
    Int4WeightOnlyConfig,
    Int8WeightOnlyConfig,
    IntWeightOnlyConfig,
    KeepSourceConfig,
    QuantConfig,
    config_from_name,
    register_recipe_name,
)
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import QuantizedWeight, quantize_rtn

# Modules that define configs register their recipe names and handlers when imported: import them here
# (config_from_name imports this package, so every recipe is known wherever a name is parsed).

__all__ = ["quantize_", "register_handler", "register_transform", "LayerContext", "LayerStats",
           "calibration_tokens", "collect_stats", "QuantConfig", "IntWeightOnlyConfig", "Int4WeightOnlyConfig",
           "Int8WeightOnlyConfig", "KeepSourceConfig", "FloatConfig", "config_from_name", "register_recipe_name",
           "QuantLinear", "QuantizedWeight", "quantize_rtn"]
