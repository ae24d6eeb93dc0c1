"""Checkpoints from other code bases: map a state dict onto a spec's module by structure.

:func:`map_checkpoint` aligns the checkpoint's tensors with the module's (order, shapes, name tokens,
in-block reordering, pure reshapes), refuses what does not map, and optionally checks the result
against the source model in float64; :func:`map_state_dict` is the bare alignment of two state dicts.
See docs/weights.md.
"""

from archc.weights.api import (
    MappedWeights,
    WeightMapError,
    load_source,
    map_checkpoint,
    mapped_checkpoint_file,
    save_weights,
)
from archc.weights.check import TOLERANCE, compare_outputs, load_factory
from archc.weights.mapping import WeightMap, map_state_dict

__all__ = ["MappedWeights", "WeightMap", "WeightMapError", "TOLERANCE", "compare_outputs", "load_factory",
           "load_source", "map_checkpoint", "map_state_dict", "mapped_checkpoint_file", "save_weights"]
