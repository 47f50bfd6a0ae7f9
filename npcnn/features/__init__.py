"""See what a layer sees: feature maps, filters, activation maximization, dataset examples.

Plain functions over a model, arrays in and arrays out (figures: :mod:`npcnn.plot.features`)::

    from npcnn import features
    maps = features.feature_maps(model, x, "conv2d_1")              # (N, h, w, C)
    strip = features.standardize(maps)                                # uint8, (m - mean)/std*64 + 128
    k = features.filters(model, "conv2d_1")                           # (F, kh, kw, Cin) in 0..1
    img = features.maximize(model, features.channel("conv2d_3", 5), steps=128, input_range=(-1, 1))
    top = features.top_k_images(model, "photos/", "conv2d_3", k=9)   # TopK(indices, values, patches...)
    features.receptive_field(model, "conv2d_3")                       # ReceptiveField(size, stride, offset)
"""
from .dataset_examples import TopK, list_images, top_k_images
from .filters import conv_layers, filters, layer_weights, normalize01, raw_filters
from .maps import KINDS, all_feature_maps, feature_maps, layers_of_kind, standardize
from .maximize import Adam, NormalizedAscent, maximize, octave_sizes
from .objectives import (Objective, channel, class_logit, class_probability, diversity, neuron,
                         objective_value)
from .parameterization import ImageParam
from .receptive_field import ReceptiveField, receptive_field, tensor_shapes, window
from .regularizers import blur_every, gaussian_blur, l1, l2, tv
from .transforms import jitter, random_rotate, random_scale, standard_transforms

__all__ = ["feature_maps", "all_feature_maps", "layers_of_kind", "standardize", "KINDS",
           "filters", "raw_filters", "normalize01", "conv_layers", "layer_weights",
           "maximize", "octave_sizes", "Adam", "NormalizedAscent", "ImageParam",
           "Objective", "channel", "neuron", "class_logit", "class_probability", "diversity", "objective_value",
           "jitter", "random_scale", "random_rotate", "standard_transforms",
           "l1", "l2", "tv", "blur_every", "gaussian_blur",
           "top_k_images", "TopK", "list_images", "receptive_field", "ReceptiveField", "tensor_shapes", "window"]
