"""Where the network looks: attribution methods, one call shape for all.

    from npcnn import attribution
    attribution.saliency(model, x, target=3)                       # (N, H, W)
    attribution.integrated_gradients(model, x, target=3, steps=64) # (N, H, W, C)
    attribution.gradcam(model, x, target=3, layer=None)            # (N, H, W) at input size
    attribution.lrp(model, x, target=3, rule="composite")          # (N, H, W, C)
    attribution.deletion(model, x, attribution_map, target=3)      # Curve(fractions, scores, auc)

``target``: a class index, a list (one per image), a function of the output returning the cotangent, or
None for the predicted class (:mod:`npcnn.attribution.targets`); ``without_softmax(model)`` explains
logits instead of probabilities. Methods that can check themselves (Integrated Gradients completeness,
LRP conservation) return ``(map, error)`` with ``return_error=True``. Long methods (SmoothGrad, IG,
Score-CAM, Ablation-CAM, occlusion, curves) run in batches with a tqdm bar (``progress=False`` hides it).
"""
from . import metrics, targets
from .cam import (ablationcam, eigencam, gradcam, gradcam_plus_plus, guided_gradcam, hirescam, layercam, scorecam,
                  xgradcam)
from .gradients import baseline_for, input_x_gradient, integrated_gradients, saliency, smoothgrad
from .lrp import lrp
from .metrics import deletion, insertion, randomization_check
from .occlusion import occlusion
from .rules import deconvnet, guided_backprop
from .targets import without_softmax

__all__ = ["saliency", "input_x_gradient", "smoothgrad", "integrated_gradients", "baseline_for",
           "guided_backprop", "deconvnet", "gradcam", "gradcam_plus_plus", "xgradcam", "hirescam", "layercam",
           "scorecam", "ablationcam", "eigencam", "guided_gradcam", "occlusion", "lrp", "deletion", "insertion",
           "randomization_check", "without_softmax", "metrics", "targets"]
