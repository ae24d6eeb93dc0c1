"""Polyak averaging: an exponential moving average of a model's weights, validated instead of the raw ones.

After every optimizer step each floating-point entry of the model's state (parameters and buffers such as
BatchNorm's running statistics) moves towards the trained value, ``ema += (1 - d) · (value - ema)``;
integer buffers (BatchNorm's step count) are copied. The decay ramps up as in
``tf.train.ExponentialMovingAverage`` with ``num_updates``, ``d = min(decay, (1 + n) / (10 + n))``, so
that the random initial weights fade out of a short run's average instead of dominating it.

The averaged weights lag the raw ones by about ``1 / (1 - decay)`` steps and vary less from one step (and
one seed) to the next; that is what an evaluation at a fixed step budget gains from them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

__all__ = ["WeightEma"]


class WeightEma:
    """The moving average of ``model``'s state; :attr:`module` is a frozen copy holding it.

    >>> ema = WeightEma(nn.Linear(2, 2), decay=0.99)
    >>> ema.update(); ema.updates
    1
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie between 0 and 1, got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        # state_dict entries share storage with the live parameters and buffers: pair them once
        src, dst = model.state_dict(), self.module.state_dict()
        self._floats = [(dst[k], v) for k, v in src.items() if v.is_floating_point()]
        self._others = [(dst[k], v) for k, v in src.items() if not v.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average, after an optimizer step."""
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        self.updates += 1
        for avg, value in self._floats:
            avg.lerp_(value, 1.0 - d)
        for avg, value in self._others:
            avg.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """The averaged state and the update count (a resumed run continues the same ramp)."""
        return {"module": {k: v.detach().to("cpu").contiguous() for k, v in self.module.state_dict().items()},
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
