"""Where the network looks: attribution methods, one call shape for all.

    from npcnn import attribution
    attribution.saliency(model, x, target=3)                       # (N, H, W)
    attribution.integrated_gradients(model, x, target=3, steps=64) # (N, H, W, C)
    attribution.gradcam(model, x, target=3, layer=None)            # (N, H, W) at input size
    attribution.lrp(model, x, target=3, rule="composite")          # (N, H, W, C)
    attribution.deletion(model, x, attribution_map, target=3)      # curve and AUC

``target``: a class index, a list (one per image), a function of the output returning the cotangent, or
None for the predicted class (:mod:`npcnn.attribution.targets`). Methods that can check themselves
(Integrated Gradients completeness, LRP conservation) return ``(map, error)`` with ``return_error=True``.
"""
from .cam import (ablationcam, eigencam, gradcam, gradcam_plus_plus, guided_gradcam, hirescam, layercam, scorecam,
                  xgradcam)
from .gradients import baseline_for, input_x_gradient, integrated_gradients, saliency, smoothgrad
from .lrp import lrp
from .occlusion import occlusion
from .rules import deconvnet, guided_backprop

__all__ = ["saliency", "input_x_gradient", "smoothgrad", "integrated_gradients", "baseline_for",
           "guided_backprop", "deconvnet", "gradcam", "gradcam_plus_plus", "xgradcam", "hirescam", "layercam",
           "scorecam", "ablationcam", "eigencam", "guided_gradcam", "occlusion", "lrp"]
