"""What is being explained: the ``target`` argument every attribution method takes.

A method explains one scalar per image, ``score = sum(cotangent * output)`` over the non-batch axes; the
cotangent (the "seed" of the backward pass) is built from ``target``:

  None          the predicted class (argmax of each row); a single-output head (N, 1): the output itself
  int c         class c for every image: cotangent = one-hot(c)
  list/array    one class per image
  callable      ``target(output) -> cotangent`` (same shape as the output), e.g. for the cats-vs-dogs
                one-logit head ``lambda y: -np.ones_like(y)`` explains "cat" (the negative logit)

Perturbation methods (Score-CAM, occlusion, deletion curves) build the cotangent once, from the
unperturbed output, and score every perturbed output with that same cotangent.
"""
import copy

import numpy as np

from ..errors import InputError


def single_output(model, output):
    """The one output array of ``model`` (methods explain single-output models)."""
    if isinstance(output, (list, tuple)):
        if len(output) != 1:
            raise InputError(f"model {model.name!r} has {len(output)} outputs; attribution explains one output: "
                             "build Model(model.inputs, model.outputs[i]) for the output you want")
        output = output[0]
    return output


def cotangent(target, output):
    """The cotangent for ``target`` given the model output (N, ...) -> array of the output's shape."""
    output = np.asarray(output)
    n = output.shape[0]
    if callable(target):
        cot = np.asarray(target(output))
        if cot.shape != output.shape:
            raise InputError(f"target function returned shape {cot.shape}; it must return a cotangent of the "
                             f"output's shape {output.shape}")
        return cot.astype(output.dtype, copy=False)
    flat = output.reshape(n, -1)
    if target is None:
        if flat.shape[1] == 1:
            return np.ones_like(output)
        classes = flat.argmax(axis=1)
    else:
        classes = np.asarray(target)
        if classes.ndim == 0:
            classes = np.full(n, int(classes))
        if classes.shape != (n,) or classes.dtype.kind not in "iu":
            raise InputError(f"target must be a class index, a list of {n} class indices (one per image) or a "
                             f"function of the output; got {target!r}")
        if classes.min() < 0 or classes.max() >= flat.shape[1]:
            raise InputError(f"target class {classes.tolist()} is out of range for an output with "
                             f"{flat.shape[1]} values per image")
    cot = np.zeros_like(flat)
    cot[np.arange(n), classes] = 1
    return cot.reshape(output.shape)


def score(cot, output):
    """sum(cot * output) over every axis but the batch: (N, ...) x (N, ...) -> (N,)."""
    return (np.asarray(cot, np.float64) * output).reshape(len(output), -1).sum(axis=1)


def without_softmax(model):
    """The same model (same layer objects and weights) ending before its final softmax, so methods explain
    logits, not probabilities (as iNNvestigate's ``model_wo_softmax``).

    A final Activation("softmax")/Softmax layer is dropped; a softmax fused into the last layer
    (Dense(..., activation="softmax")) is replaced by a linear copy of that layer sharing its weights.
    A model without a final softmax is returned unchanged.
    """
    from ..model import Model  # the graph class; imported here to keep this module light

    out = model.outputs[0] if len(model.outputs) == 1 else None
    if out is None or out.node is None:
        raise InputError(f"model {model.name!r}: without_softmax needs a single-output model")
    layer = out.node.layer
    if layer.activation.name not in ("softmax", "log_softmax"):
        return model
    if type(layer).__name__ in ("Activation", "Softmax"):
        logits = out.node.inputs[0]
    else:
        linear = copy.copy(layer)
        linear.nodes = []
        linear.set_activation("linear")
        ins = out.node.inputs
        logits = linear(ins if layer.multi_input else ins[0])
    result = Model(model.inputs, logits, name=f"{model.name}_logits")
    result.dtype = model.dtype  # the layers are shared, so their weights already have this dtype
    return result
