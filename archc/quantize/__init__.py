"""int8 post-training quantization, a lowering that runs on the result of the deploy pipeline.

calibrate (:mod:`~archc.quantize.calibrate`) → quantize (:mod:`~archc.quantize.quantize_onnx`,
:mod:`~archc.quantize.quantize_fx`) → check and report (:mod:`~archc.quantize.report`) → artifact
(:mod:`~archc.quantize.lower`). Nothing in the compiler imports this package; it calls the compiler.

>>> from archc.compiler import CompileOptions
>>> from archc.quantize import QuantOptions, compile_quantized
>>> r = compile_quantized("specs/resnet.yaml", CompileOptions(variant="resnet18", pipeline="deploy", target="onnx"),
...                       QuantOptions(calib="digits"), "r18_int8.onnx")   # doctest: +SKIP
"""

from archc.quantize.calibrate import METHODS, QuantizeError
from archc.quantize.lower import QUANT_TARGETS, QuantOptions, QuantResult, check_request, compile_quantized, report_path
from archc.quantize.report import LayerStat, QuantReport, sqnr_db

__all__ = ["QuantOptions", "QuantResult", "QuantReport", "LayerStat", "QuantizeError", "compile_quantized",
           "check_request", "report_path", "sqnr_db", "METHODS", "QUANT_TARGETS"]
