"""Hints for names other frameworks use: an unknown op or attribute maps to archc's own.

A misspelling is caught by :func:`archc.diagnostics.suggest` (edit distance); these tables catch the
names that are *right elsewhere* — ``upsample``, ``nn.Conv2d``, ``kernel_size`` — and are nowhere near
archc's spelling. Keys are compared case-insensitively with any ``nn.``/``F.``/``torch.`` prefix
dropped. Every target must be a registered op (tested), so a hint never points at nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from archc.diagnostics import suggest

__all__ = ["OP_ALIASES", "ATTR_ALIASES", "op_hint", "attr_hint"]

#: other frameworks' op names (PyTorch modules and functions, ONNX, Keras, timm) → archc op
OP_ALIASES: dict[str, str] = {
    "upsample": "resize", "interpolate": "resize", "upsamplingbilinear2d": "resize", "upsamplingnearest2d": "resize",
    "resize_bilinear": "resize", "upsampling2d": "resize",
    "conv": "conv2d", "convolution": "conv2d", "depthwiseconv2d": "conv2d",
    "convtranspose2d": "conv_transpose2d", "conv2dtranspose": "conv_transpose2d", "convtranspose": "conv_transpose2d",
    "deconv": "conv_transpose2d", "deconv2d": "conv_transpose2d", "deconvolution": "conv_transpose2d",
    "dense": "linear", "fc": "linear", "gemm": "linear", "fullyconnected": "linear",
    "batchnorm2d": "batchnorm", "batchnorm1d": "batchnorm", "batch_norm": "batchnorm", "batchnormalization": "batchnorm",
    "bn": "batchnorm", "layer_norm": "layernorm", "layernormalization": "layernorm", "ln": "layernorm",
    "group_norm": "groupnorm", "groupnormalization": "groupnorm",
    "maxpool": "maxpool2d", "max_pool2d": "maxpool2d", "maxpooling2d": "maxpool2d",
    "avgpool": "avgpool2d", "avg_pool2d": "avgpool2d", "averagepooling2d": "avgpool2d", "averagepool": "avgpool2d",
    "cat": "concat", "concatenate": "concat", "view": "reshape", "unflatten": "reshape",
    "bmm": "matmul", "mm": "matmul", "dot": "matmul",
    "scaled_dot_product_attention": "sdpa", "multiheadattention": "sdpa",
    "swish": "silu", "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid", "leakyrelu": "leaky_relu",
    "gather": "index_select", "take": "index_select", "embedding_lookup": "index_select",
    "shift": "roll", "cyclic_shift": "roll",
    "add_n": "sum", "addn": "sum", "plus": "add", "subtract": "sub", "minus": "sub", "multiply": "mul", "divide": "div",
    "clip": "clamp", "absolute": "abs", "greater": "gt", "less": "lt", "equal": "eq", "not_equal": "ne",
    "greater_equal": "ge", "less_equal": "le", "select": "where",
    "droppath": "drop_path", "stochastic_depth": "drop_path", "parameter": "param", "register_buffer": "constant",
    "buffer": "constant", "tensor": "constant", "fft2": "rfft2", "ifft2": "irfft2",
}

#: other frameworks' attribute names → archc attribute (only offered when the op has that attribute)
ATTR_ALIASES: dict[str, str] = {
    "kernel_size": "kernel", "ksize": "kernel", "k": "kernel", "filters": "out", "out_channels": "out",
    "out_features": "out", "units": "out", "num_features": "out", "scale_factor": "scale", "scales": "scale",
    "output_size": "size", "num_heads": "heads", "n_heads": "heads", "strides": "stride", "pad": "padding",
    "pads": "padding", "dilation_rate": "dilation", "use_bias": "bias", "epsilon": "eps", "axis": "dim", "axes": "dims",
    "shift_size": "shift", "window_size": "window", "keepdims": "keepdim",
    "drop_prob": "p", "rate": "p", "negative_slope": "slope", "num_groups": "groups", "min_val": "min", "max_val": "max",
}

#: attributes PyTorch asks for that archc infers from the input, with the reason
INFERRED_ATTRS: dict[str, str] = {
    "in_channels": "input channels are read from the input's shape",
    "in_features": "input features are read from the input's shape",
    "normalized_shape": "the normalized size is read from the input's shape",
    "inplace": "generated code chooses in-place updates itself; drop it",
}


def _key(name: str) -> str:
    for prefix in ("nn.", "F.", "torch.nn.functional.", "torch.nn.", "torch.", "tf.keras.layers.", "layers."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.lower()


_OPS = {_key(k): v for k, v in OP_ALIASES.items()}
_ATTRS = {_key(k): v for k, v in ATTR_ALIASES.items()}


def op_hint(name: object, candidates: Iterable[str]) -> str | None:
    """``did you mean 'x'?`` for an unknown op: the same name in another case, a known alias, or a near spelling."""
    names = sorted(set(candidates))
    text = str(name)
    key = _key(text)
    by_lower = {n.lower(): n for n in names}
    if key in by_lower:
        return f"did you mean '{by_lower[key]}'?"
    alias = _OPS.get(key) or _OPS.get(key.replace("_", ""))
    if alias in names:
        return f"did you mean '{alias}'? ('{text}' is called '{alias}' here)"
    return suggest(text, names)


def attr_hint(name: object, op: str, attrs: Iterable[str]) -> str | None:
    """A hint for an unknown attribute of ``op``: a known alias the op has, an inferred size, or a near spelling."""
    names = list(attrs)
    key = _key(str(name))
    alias = _ATTRS.get(key)
    if alias in names and alias != name:
        return f"did you mean '{alias}'? ('{name}' is called '{alias}' here)"
    if key in INFERRED_ATTRS:
        return f"'{op}' does not take '{name}': {INFERRED_ATTRS[key]}"
    return suggest(str(name), names)
