"""Every layer npcnn implements, one module per family. ``CLASSES`` maps Keras class names to them:
it is the only way a name read from a file becomes a class."""
from .activation import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .base import Layer, SymbolicTensor
from .conv import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .core import (ActivityRegularization, Activation, Dense, Dropout, Flatten, GaussianDropout, GaussianNoise,
                   InputLayer, Permute, Rescaling, Reshape, SpatialDropout1D, SpatialDropout2D)
from .merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from .normalization import BatchNormalization, LayerNormalization, Normalization
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D)
from .reshaping import Cropping2D, UpSampling2D, ZeroPadding2D

CLASSES = {cls.__name__: cls for cls in [
    InputLayer, Dense, Activation, Flatten, Reshape, Permute, Rescaling, Dropout, SpatialDropout1D,
    SpatialDropout2D, GaussianNoise, GaussianDropout, ActivityRegularization,
    Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D,
    MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
    GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
    BatchNormalization, LayerNormalization, Normalization,
    ReLU, LeakyReLU, PReLU, ELU, Softmax,
    Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate,
    ZeroPadding2D, Cropping2D, UpSampling2D,
]}
# Keras's other spellings of the same classes
CLASSES.update({"Convolution2D": Conv2D, "Convolution1D": Conv1D, "MaxPool2D": MaxPooling2D,
                "AvgPool2D": AveragePooling2D, "MaxPool1D": MaxPooling1D, "AvgPool1D": AveragePooling1D,
                "GlobalAvgPool2D": GlobalAveragePooling2D, "GlobalMaxPool2D": GlobalMaxPooling2D,
                "GlobalAvgPool1D": GlobalAveragePooling1D, "GlobalMaxPool1D": GlobalMaxPooling1D,
                "SeparableConvolution2D": SeparableConv2D, "Conv2DTransposed": Conv2DTranspose,
                "Deconvolution2D": Conv2DTranspose})

__all__ = sorted(set(CLASSES) | {"Layer", "SymbolicTensor", "CLASSES"})
