"""Absurd layer options and sizes are refused with an InputError naming the layer, before memory is taken."""
import pytest

import npcnn
from npcnn import layers as L


@pytest.mark.parametrize("make, message", [
    (lambda: L.Conv2D(4, 3, strides=0), "strides must be positive"),
    (lambda: L.Conv2D(4, (3, -1)), "kernel_size must be positive"),
    (lambda: L.Conv2D(0, 3), "filters and groups"),
    (lambda: L.Conv2D(4, "x"), "kernel_size must be an int or a pair"),
    (lambda: L.Conv1D(4, [3, 3]), "kernel_size must be positive"),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=-2), "depth_multiplier"),
    (lambda: L.MaxPooling2D(0), "pool_size and strides"),
    (lambda: L.MaxPooling1D(2, strides=0), "strides must be positive"),
    (lambda: L.Dense(-5), "units must be positive"),
    (lambda: L.Dense("ten"), "units must be positive"),
    (lambda: L.Reshape((-1, -1)), "at most one -1"),
    (lambda: L.Reshape((0, 3)), "target_shape"),
    (lambda: L.UpSampling2D((2, 0)), "size must be positive"),
    (lambda: L.ZeroPadding2D(-1), "non-negative"),
    (lambda: L.Cropping2D(((1, 2), (3,))), "pair of pairs"),
])
def test_bad_options(make, message):
    with pytest.raises(npcnn.InputError, match=message):
        make()


def test_absurd_weight_is_refused_before_allocation():
    x = npcnn.Input((1 << 16, 1 << 16, 3))
    with pytest.raises(npcnn.InputError, match="more than .* numbers"):
        L.Dense(1 << 20, name="huge")(L.Flatten()(x))


def test_big_but_sane_weights_still_build():
    from npcnn.layers.base import zero_init
    x = npcnn.Input((7, 7, 512))
    with zero_init():  # zeros cost no time: only the size check is under test
        y = L.Dense(4096, name="fc1")(L.Flatten()(x))  # VGG16's fc1: 102 M numbers
    assert y.shape == (None, 4096)
