"""Quantization passes on torch modules: `quantize_(model, config)`.

Modules that define configs register their recipe names and handlers when imported, so each is imported
here (config_from_name imports this package: every recipe is known wherever a name is parsed).
"""

from retarget.quantize.api import (
    LayerContext,
    QuantizationReport,
    quantization_report,
    quantize_,
    quantized_weights,
    register_handler,
    register_transform,
)
from retarget.quantize.awq import AWQConfig
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
from retarget.quantize.fp4 import Fp4WeightConfig
from retarget.quantize.fp8 import Fp8WeightConfig, W8A8Fp8Config
from retarget.quantize.gptq import GPTQConfig
from retarget.quantize.hqq import HQQConfig
from retarget.quantize.kv_cache import KVCacheConfig, kv_logits_fn, split_recipe
from retarget.quantize.modules import QuantLinear
from retarget.quantize.mse import MSEConfig
from retarget.quantize.smoothquant import SmoothQuantConfig, W8A8Int8Config
from retarget.quantize.weight import QuantizedWeight, quantize_rtn

__all__ = ["quantize_", "quantized_weights", "quantization_report", "QuantizationReport",
           "register_handler", "register_transform", "LayerContext", "LayerStats",
           "calibration_tokens", "collect_stats", "QuantConfig", "IntWeightOnlyConfig", "Int4WeightOnlyConfig",
           "Int8WeightOnlyConfig", "KeepSourceConfig", "FloatConfig", "config_from_name", "register_recipe_name",
           "QuantLinear", "QuantizedWeight", "quantize_rtn", "GPTQConfig", "AWQConfig", "HQQConfig",
           "Fp8WeightConfig", "Fp4WeightConfig", "W8A8Fp8Config", "W8A8Int8Config", "SmoothQuantConfig",
           "KVCacheConfig", "kv_logits_fn", "split_recipe", "MSEConfig"]
