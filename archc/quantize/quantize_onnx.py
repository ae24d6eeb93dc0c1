"""int8 ONNX in QDQ form with onnxruntime's static quantizer, and its per-layer error analysis.

The float ONNX model of the deploy pipeline is quantized by ``onnxruntime.quantization.quantize_static``
(``QuantFormat.QDQ``, ``per_channel=True``): weights int8, symmetric, one scale per output channel;
activations uint8, asymmetric, one scale and zero point per tensor. The activation ranges are
archc's own (:mod:`archc.quantize.calibrate`: minmax, percentile or mse), computed from the float
model's tensors on the calibration inputs and handed to the quantizer as ``TensorQuantOverrides``
(``rmin``/``rmax``), so the range of every tensor is the one the report describes. Layers kept float
go to ``nodes_to_exclude``. onnxruntime turns the Q/DQ pairs into int8 kernels (``QLinearConv``,
``QGemm``, ``QLinearAdd`` ...) when it optimizes the session.

The analysis runs the float model and the QDQ model (optimizations off, every tensor an output) on
the calibration inputs, and each quantized layer alone — a one-node model fed the float model's
tensors — for its own SQNR (see :mod:`archc.quantize.report`).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import helper

from archc.quantize.calibrate import CalibrationData, QuantizeError, RangeCollector
from archc.quantize.report import LayerStat, QuantReport, SqnrMeter, channel_ratio, weight_sqnr

__all__ = ["quantize_qdq", "collect_ranges", "analyze_onnx", "onnx_layers", "optimized_op_types", "OnnxLayer"]

#: ops that only move or select values: their output shares the input's grid, they are not reported as layers
_MOVERS = {"MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather",
           "Resize", "Pad", "Identity", "Expand", "Tile", "DepthToSpace", "SpaceToDepth"}
_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _session(data: bytes, optimize: bool = True, threads: int | None = 1):  # noqa: ANN202 - onnxruntime.InferenceSession
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def inline_shared_weights(float_model: bytes) -> bytes:
    """Give every ``Identity`` of an initializer its own copy of the initializer.

    The exporter stores equal parameters once and reaches the others through ``Identity`` nodes (the
    zero biases of BN-folded convs, for instance); the quantizer would take such a bias for an
    activation, quantize it to uint8, and onnxruntime could no longer fuse the conv into ``QLinearConv``.
    """
    model = onnx.load_from_string(float_model)
    inits = {i.name: i for i in model.graph.initializer}
    keep = []
    copied = False
    for n in model.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            model.graph.initializer.append(t)
            copied = True
        else:
            keep.append(n)
    if not copied:
        return float_model
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model.SerializeToString()


def _float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the activations a quantizer may quantize: graph inputs and node outputs (not weights or constants)."""
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for n in model.graph.node:
        if n.op_type == "Constant":
            continue
        names += [o for o in n.output if o]
    return list(dict.fromkeys(names))


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    """The model with ``names`` added as graph outputs (element type float, shape left open)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m.SerializeToString()


def _feeds(sess, batch: torch.Tensor) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {sess.get_inputs()[0].name: batch.detach().float().numpy()}


def collect_ranges(float_model: bytes, calib: CalibrationData, method: str) -> tuple[dict[str, tuple[float, float]], dict[str, RangeCollector]]:
    """The calibrated (rmin, rmax) of every float activation of ``float_model``, and the collectors behind them."""
    model = onnx.load_from_string(float_model)
    names = _float_tensors(model)
    sess = _session(_with_outputs(model, names), optimize=False)
    outs = [o.name for o in sess.get_outputs()]
    collectors = {n: RangeCollector(seed=i) for i, n in enumerate(names)}
    for batch in calib:
        for name, value in zip(outs, sess.run(None, _feeds(sess, batch))):
            if name in collectors and np.issubdtype(np.asarray(value).dtype, np.floating):
                collectors[name].add(value)
    ranges = {n: c.range(method) for n, c in collectors.items() if c.hi >= c.lo}
    return ranges, collectors


class _Reader:
    """The calibration batches as onnxruntime's ``CalibrationDataReader``."""

    def __init__(self, input_name: str, calib: CalibrationData) -> None:
        self._it = iter([{input_name: b.detach().float().numpy()} for b in calib])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_qdq(float_model: bytes, calib: CalibrationData, ranges: dict[str, tuple[float, float]],
                 exclude: Sequence[str] = ()) -> bytes:
    """The QDQ int8 model of ``float_model`` with activation ranges ``ranges``; nodes ``exclude`` stay float."""
    import logging

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load_from_string(float_model)
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(model.graph.input[0].name, calib)
    overrides = {n: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for n, (lo, hi) in ranges.items()}
    with tempfile.TemporaryDirectory(prefix="archc-q-") as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as f:
            f.write(float_model)
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)  # the quantizer logs advice on pre-processing we do not need
        try:
            quantize_static(src, dst, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude),
                            extra_options={"TensorQuantOverrides": overrides, "WeightSymmetric": True,
                                           "ActivationSymmetric": False})
        finally:
            logging.disable(level)
        with open(dst, "rb") as f:
            return f.read()


def keep_float_inputs(qdq_model: bytes, float_model: bytes, kept: Sequence[str]) -> bytes:
    """Make the nodes ``kept`` really run in float in onnxruntime.

    The quantizer leaves an excluded node's weights float, but its activation input still comes
    from a per-tensor DequantizeLinear, and onnxruntime's ``WeightBiasQuantization`` then quantizes
    such a Conv/Gemm's weights itself (int8, per tensor: worse than archc's per-channel ones) and
    fuses the node into an int8 kernel (likewise an Add between Q/DQ pairs becomes ``QLinearAdd``).
    Each kept node reads its inputs through its own DequantizeLinear with the same scale repeated per
    channel (axis 1): the same values, but not a pattern those rewrites take.
    """
    if not kept:
        return qdq_model
    from onnx import numpy_helper

    qm = onnx.load_from_string(qdq_model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
              for v in [*onnx.shape_inference.infer_shapes(onnx.load_from_string(float_model)).graph.value_info,
                        *onnx.load_from_string(float_model).graph.input]}
    producer = {o: n for n in qm.graph.node for o in n.output}
    inits = {i.name: i for i in qm.graph.initializer}
    new_nodes = []
    for n in qm.graph.node:
        if n.name in kept:
            for idx, i in enumerate(list(n.input)):
                dq = producer.get(i)
                if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in inits:
                    continue
                q = producer.get(dq.input[0])
                shape = shapes.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
                if not shape or len(shape) < 2 or shape[1] < 2 or dq.input[1] not in inits:
                    continue
                channels = shape[1]
                scale = numpy_helper.to_array(inits[dq.input[1]]).reshape(-1)
                zp = numpy_helper.to_array(inits[dq.input[2]]).reshape(-1) if len(dq.input) > 2 else np.zeros(1, np.uint8)
                if scale.size != 1:
                    continue
                base = f"{n.name}_in{idx}_float"
                qm.graph.initializer.extend([numpy_helper.from_array(np.repeat(scale, channels), base + "_scale"),
                                             numpy_helper.from_array(np.repeat(zp, channels), base + "_zero_point")])
                new_nodes.append(helper.make_node("DequantizeLinear", [dq.input[0], base + "_scale", base + "_zero_point"],
                                                  [base + "_DequantizeLinear_Output"], name=base + "_DequantizeLinear", axis=1))
                n.input[idx] = base + "_DequantizeLinear_Output"
        new_nodes.append(n)
    del qm.graph.node[:]
    qm.graph.node.extend(new_nodes)
    return qm.SerializeToString()


@dataclass
class OnnxLayer:
    """A quantized node of a QDQ model and how to measure it."""

    node: onnx.NodeProto
    name: str
    #: the float tensor of the layer's output (a name of the float model) and its dequantized value in the QDQ model
    out_float: str
    out_dq: str
    weight: str | None = None
    float_inputs: dict[str, str] = field(default_factory=dict)
    quantize: onnx.NodeProto | None = None
    dequantize: onnx.NodeProto | None = None


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    cons: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    return cons


def layer_name(node: onnx.NodeProto, weight: str | None) -> str:
    """A weighted layer is named by its module path (the weight's name without ``.weight``), others by the node."""
    if weight and weight.endswith(".weight"):
        return weight[: -len(".weight")]
    return node.name or node.output[0]


def onnx_layers(qdq: onnx.ModelProto, float_names: set[str]) -> list[OnnxLayer]:
    """The quantized compute nodes of ``qdq`` (an input from a DequantizeLinear, the output into a QuantizeLinear)."""
    producer = {o: n for n in qdq.graph.node for o in n.output}
    inits = {i.name for i in qdq.graph.initializer}
    cons = _consumers(qdq)
    layers = []
    for n in qdq.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant") or n.op_type in _MOVERS or not n.output:
            continue
        dq_inputs = [producer.get(i) for i in n.input]
        if not any(p is not None and p.op_type == "DequantizeLinear" for p in dq_inputs):
            continue
        out = n.output[0]
        q = next((c for c in cons.get(out, []) if c.op_type == "QuantizeLinear"), None)
        dq = None if q is None else next((c for c in cons.get(q.output[0], []) if c.op_type == "DequantizeLinear"), None)
        if dq is None:
            continue
        # a graph output keeps its name on the DequantizeLinear; the node's own output was renamed
        out_float = out if out in float_names else dq.output[0] if dq.output[0] in float_names else None
        if out_float is None:
            continue
        weight = None
        float_inputs: dict[str, str] = {}
        for idx, (i, p) in enumerate(zip(n.input, dq_inputs)):
            if p is not None and p.op_type == "DequantizeLinear" and p.input[0] in inits:
                if idx == 1 and n.op_type in _WEIGHTED:
                    weight = p.input[0][: -len("_quantized")] if p.input[0].endswith("_quantized") else p.input[0]
                continue
            if p is not None and p.op_type == "DequantizeLinear":
                q_in = producer.get(p.input[0])
                if q_in is not None and q_in.op_type == "QuantizeLinear":
                    float_inputs[i] = q_in.input[0]
                    continue
            if i and i not in inits and not (p is not None and p.op_type == "Constant"):
                float_inputs[i] = i
        layers.append(OnnxLayer(n, layer_name(n, weight), out_float, dq.output[0], weight, float_inputs, q, dq))
    return layers


def _own_model(qdq: onnx.ModelProto, layer: OnnxLayer) -> bytes:
    """A model of the layer alone: float activations in, weights through their DequantizeLinear, output Q → DQ."""
    producer = {o: n for n in qdq.graph.node for o in n.output}
    inits = {i.name: i for i in qdq.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    node = onnx.NodeProto()
    node.CopyFrom(layer.node)
    del node.input[:]
    inputs = []
    for i in layer.node.input:
        if i in layer.float_inputs:
            src = layer.float_inputs[i]
            node.input.append(src)
            if src not in inputs:
                inputs.append(src)
            continue
        node.input.append(i)
        p = producer.get(i)
        if p is not None and p.op_type in ("DequantizeLinear", "Constant"):
            nodes.append(p)
    q, dq = layer.quantize, layer.dequantize
    nodes += [node, q, dq]
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info(i, onnx.TensorProto.FLOAT, None) for i in inputs],
                              [helper.make_tensor_value_info(dq.output[0], onnx.TensorProto.FLOAT, None)],
                              [inits[u] for u in used if u in inits])
    m = helper.make_model(graph, opset_imports=list(qdq.opset_import), ir_version=qdq.ir_version)
    return m.SerializeToString()


def _macs(op: str, w: np.ndarray | None, out_shape: tuple[int, ...]) -> int:
    """MACs per sample of a weighted node from its weight and output shape."""
    if w is None or op not in _WEIGHTED:
        return 0
    per_sample = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
    if op in ("Conv", "ConvTranspose"):
        cout = out_shape[1] if len(out_shape) > 1 else 1
        return per_sample // max(cout, 1) * int(w.size)
    if op == "Gemm":
        return int(w.size)
    return per_sample // max(int(w.shape[-1]), 1) * int(w.size)  # MatMul with a constant right-hand side


def analyze_onnx(float_model: bytes, qdq_model: bytes, calib: CalibrationData,
                 collectors: dict[str, RangeCollector] | None = None,
                 ranges: dict[str, tuple[float, float]] | None = None) -> tuple[list[LayerStat], float]:
    """Per-layer statistics of ``qdq_model`` against ``float_model`` on ``calib``, and the model output's SQNR.

    The model output is measured on the optimized onnxruntime session (the int8 kernels that ship);
    the layers on the QDQ graph run unoptimized (dequantize → float op → quantize: the same grids).
    """
    fm = onnx.load_from_string(float_model)
    qm = onnx.load_from_string(qdq_model)
    float_names = set(_float_tensors(fm))
    layers = onnx_layers(qm, float_names)
    want_f = sorted({layer.out_float for layer in layers} | {s for layer in layers for s in layer.float_inputs.values()})
    want_q = sorted({layer.out_dq for layer in layers})
    f_sess = _session(_with_outputs(fm, want_f), optimize=False)
    q_sess = _session(_with_outputs(qm, want_q), optimize=False)
    q_real = _session(qdq_model)
    f_names = [o.name for o in f_sess.get_outputs()]
    q_names = [o.name for o in q_sess.get_outputs()]
    n_model_out = len(fm.graph.output)
    own_sess = {}
    for layer in layers:
        try:
            own_sess[layer.name] = _session(_own_model(qm, layer), optimize=False)
        except Exception:  # noqa: BLE001 - a node onnxruntime cannot run alone: its own SQNR is left out
            own_sess[layer.name] = None
    cum = {layer.name: SqnrMeter() for layer in layers}
    own = {layer.name: SqnrMeter() for layer in layers}
    model_meter = SqnrMeter()
    ch_lo: dict[str, np.ndarray] = {}
    ch_hi: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for batch in calib:
        fv = dict(zip(f_names, f_sess.run(None, _feeds(f_sess, batch))))
        qv = dict(zip(q_names, q_sess.run(None, _feeds(q_sess, batch))))
        real = q_real.run(None, _feeds(q_real, batch))
        for k in range(n_model_out):
            model_meter.add(fv[f_names[k]], real[k])
        for layer in layers:
            ref = fv[layer.out_float]
            cum[layer.name].add(ref, qv[layer.out_dq])
            sess = own_sess[layer.name]
            if sess is not None:
                feeds = {i.name: fv[i.name] for i in sess.get_inputs()}
                own[layer.name].add(ref, sess.run(None, feeds)[0])
            shapes[layer.name] = tuple(ref.shape)
            if ref.ndim >= 2:  # per-channel ranges of the output (channels on axis 1)
                r = np.moveaxis(ref, 1, 0).reshape(ref.shape[1], -1)
                lo, hi = r.min(axis=1), r.max(axis=1)
                ch_lo[layer.name] = np.minimum(ch_lo.get(layer.name, lo), lo)
                ch_hi[layer.name] = np.maximum(ch_hi.get(layer.name, hi), hi)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in fm.graph.initializer}
    stats = []
    for layer in layers:
        w = weights.get(layer.weight) if layer.weight else None
        w_axis = 1 if (layer.node.op_type == "Gemm" and _trans_b(layer.node) == 0) or layer.node.op_type == "MatMul" else 0
        if layer.node.op_type == "ConvTranspose":
            w_axis = 1
        col = (collectors or {}).get(layer.out_float)
        value_ratio = None
        if col is not None and col.hi > col.lo:
            q = float(np.quantile(np.abs(col.sample.astype(np.float64)), 0.9999))
            value_ratio = max(abs(col.lo), abs(col.hi)) / q if q > 0 else None
        stat = LayerStat(
            name=layer.name, op=layer.node.op_type, macs=_macs(layer.node.op_type, w, shapes.get(layer.name, ())),
            sqnr=cum[layer.name].db, own_sqnr=own[layer.name].db if own_sess[layer.name] is not None else None,
            node=layer.node.name, out_range=(ranges or {}).get(layer.out_float),
            out_channel_ratio=channel_ratio(ch_lo[layer.name], ch_hi[layer.name]) if layer.name in ch_lo else None,
            out_value_ratio=value_ratio,
            weight_channel_ratio=channel_ratio(*_channel_extremes(w, w_axis)) if w is not None and w.ndim >= 2 else None,
            weight_sqnr=weight_sqnr(w, w_axis) if w is not None and w.ndim >= 2 else None)
        stats.append(stat)
    return stats, model_meter.db


def _trans_b(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "transB"), 0)


def _channel_extremes(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    return r.min(axis=1), r.max(axis=1)


def float_macs_of(float_model: bytes) -> dict[str, int]:
    """MACs per sample of every weighted node of the float model, by layer name (for layers kept float)."""
    fm = onnx.load_from_string(float_model)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in fm.graph.initializer}
    nodes = [n for n in fm.graph.node if n.op_type in _WEIGHTED and len(n.input) > 1 and n.input[1] in weights]
    sess = _session(_with_outputs(fm, [n.output[0] for n in nodes]), optimize=False)
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {inp.name: np.zeros(shape, np.float32)})))
    return {layer_name(n, n.input[1]): _macs(n.op_type, weights[n.input[1]], tuple(outs[n.output[0]].shape)) for n in nodes}


def optimized_op_types(qdq_model: bytes) -> dict[str, int]:
    """Op types of the graph onnxruntime actually runs (session optimizations on): shows the int8 kernels."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="archc-q-") as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = path
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        ort.InferenceSession(qdq_model, opts, providers=["CPUExecutionProvider"])
        return dict(Counter(n.op_type for n in onnx.load(path).graph.node))


def node_names(model: bytes) -> dict[str, str]:
    """Layer name → ONNX node name for every weighted node and every named node (for ``--keep-float``)."""
    fm = onnx.load_from_string(model)
    inits = {i.name for i in fm.graph.initializer}
    names: dict[str, str] = {}
    for n in fm.graph.node:
        weight = n.input[1] if n.op_type in _WEIGHTED and len(n.input) > 1 and n.input[1] in inits else None
        names[layer_name(n, weight)] = n.name
        if n.name:
            names.setdefault(n.name, n.name)
    return names


def check_quantized(qdq_model: bytes) -> None:
    """onnx.checker on the QDQ model; a failure is archc's bug, reported as such."""
    try:
        onnx.checker.check_model(onnx.load_from_string(qdq_model), full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise QuantizeError(f"the int8 ONNX model fails onnx.checker: {str(exc).splitlines()[0][:200]}",
                            hint="this is a bug in archc's quantization; report the spec") from None


def build_onnx_int8(prep, calib: CalibrationData, quant, threshold: float, resolve, spec=None,  # noqa: ANN001
                    options=None) -> tuple[list, QuantReport, list[str]]:
    """The int8 QDQ model of a deploy-compiled spec, its report and notes (see :func:`archc.quantize.lower.quantize_prepared`)."""
    from archc.backends.onnx import build_onnx, have_onnxruntime

    if not have_onnxruntime():
        raise QuantizeError("--quantize with --target onnx needs onnxruntime", hint="pip install 'archc[quant]'")
    float_model, notes = build_onnx(prep.factory(True), prep.inputs, prep.input_names)
    float_model = inline_shared_weights(float_model)
    ranges, collectors = collect_ranges(float_model, calib, quant.method)
    known = node_names(float_model)
    kept = resolve(quant.keep_float, known)
    qdq = quantize_qdq(float_model, calib, ranges)
    first, all_int8 = analyze_onnx(float_model, qdq, calib, collectors, ranges)
    if quant.min_sqnr is not None:
        kept += [s.node for s in first if s.own_sqnr is not None and s.own_sqnr < quant.min_sqnr and s.node not in kept]
    final, model_sqnr = first, all_int8
    if kept:
        qdq = keep_float_inputs(quantize_qdq(float_model, calib, ranges, exclude=kept), float_model, kept)
        final, model_sqnr = analyze_onnx(float_model, qdq, calib, collectors, ranges)
    check_quantized(qdq)
    macs = float_macs_of(float_model)
    by_node = {v: k for k, v in known.items() if k in macs}
    kernels = optimized_op_types(qdq)
    int8_ops = {k: v for k, v in kernels.items() if k.startswith(("QLinear", "QGemm", "ConvInteger", "MatMulInteger",
                                                                  "DynamicQuantize", "QAttention"))}
    notes = [*notes, f"int8 QDQ model: onnxruntime runs {', '.join(f'{v} {k}' for k, v in sorted(int8_ops.items())) or 'no int8 kernels'}"]
    reparam = None
    if spec is not None:
        from archc.quantize.reparam import reparam_comparison

        reparam = reparam_comparison(spec, options, prep, calib, quant.method)
        if reparam is not None:
            notes.append(f"reparameterization ({reparam['branch_merges']} branch merge(s)): {reparam['verdict']} "
                         f"({reparam['merged']['model_output_sqnr_db']:.1f} vs {reparam['unmerged']['model_output_sqnr_db']:.1f} dB)")
    report = QuantReport(target="onnx", backend=f"onnxruntime {_ort_version()} QDQ", method=quant.method,
                         calibration=calib.description, threshold=threshold, layers=final, model_sqnr=model_sqnr,
                         all_int8_sqnr=all_int8, total_macs=sum(macs.values()),
                         float_layers=[by_node.get(n, n) for n in kept], notes=notes, kernels=kernels,
                         extra={"_first_layers": first, **({"reparameterization": reparam} if reparam else {})})
    return [qdq], report, notes


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
