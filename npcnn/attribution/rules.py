"""Modified-backprop methods: the model's own backward pass with the ReLU-family backward swapped for
the whole model (:meth:`npcnn.Model.backward_rule`), so no layer code is copied or changed.

  vanilla        dz = 1[z > 0] * dy
  guided         dz = 1[z > 0] * max(dy, 0)     (Springenberg et al. 2014)
  deconvnet      dz = max(dy, 0)                 (Zeiler & Fergus 2014)
"""
from .gradients import _gradient


def _with_rule(rule, model, x, target, batch_size):
    with model.backward_rule(rule):
        return _gradient(model, x, target, batch_size=batch_size)


def guided_backprop(model, x, target=None, batch_size=None):
    """Guided Backpropagation: x (N, H, W, C) -> (N, H, W, C) signed "gradient" under the guided rule."""
    return _with_rule("guided", model, x, target, batch_size)


def deconvnet(model, x, target=None, batch_size=None):
    """Deconvnet: x (N, H, W, C) -> (N, H, W, C) under the deconvnet rule (forward ReLU masks ignored)."""
    return _with_rule("deconvnet", model, x, target, batch_size)
