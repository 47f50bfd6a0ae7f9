"""npcnn.features: feature maps, standardised strips, filters, receptive fields, dataset examples."""
import numpy as np
import pytest

import npcnn
from npcnn import conv as core
from npcnn import features as F
from npcnn.errors import InputError
from npcnn.layers import (Activation, Add, AveragePooling2D, BatchNormalization, Conv2D, Dense, DepthwiseConv2D,
                          Flatten, GlobalAveragePooling2D, MaxPooling2D, SeparableConv2D, ZeroPadding2D)


def small_cnn(seed=0):
    """The cats-vs-dogs article's model, shrunk: conv(8) pool conv(16) pool dense."""
    npcnn.set_seed(seed)
    return npcnn.Sequential([
        Conv2D(8, 3, padding="same", activation="relu", input_shape=(24, 24, 3), name="conv2d"),
        MaxPooling2D(name="max_pooling2d"), Conv2D(16, 3, padding="same", activation="relu", name="conv2d_1"),
        MaxPooling2D(name="max_pooling2d_1"), Flatten(name="flatten"), Dense(4, name="dense")])


# ---------------------------------------------------------------- feature maps
def test_feature_map_equals_activations_and_truncated_model(rng):
    m = small_cnn()
    x = rng.normal(size=(3, 24, 24, 3)).astype("float32")
    maps = F.feature_maps(m, x, "conv2d_1")
    assert maps.shape == (3, 12, 12, 16)
    np.testing.assert_array_equal(maps, m.activations(x)["conv2d_1"])
    # Keras-familiar: Model(model.inputs, layer.output).predict(x)
    sub = npcnn.Model(m.inputs, m.get_layer("conv2d_1").nodes[-1].outputs[0])
    np.testing.assert_allclose(maps, sub.predict(x), rtol=1e-6, atol=1e-6)
    # and channel 5 by hand: relu(conv(pool(relu(conv(x)))))
    l0, l1 = m.get_layer("conv2d"), m.get_layer("conv2d_1")
    h = np.maximum(core.conv2d(x, l0.params["kernel"], l0.params["bias"], pads=((1, 1), (1, 1))), 0)
    h = h.reshape(3, 12, 2, 12, 2, 8).max(axis=(2, 4))
    ref = np.maximum(core.conv2d(h, l1.params["kernel"], l1.params["bias"], pads=((1, 1), (1, 1))), 0)
    np.testing.assert_allclose(maps[..., 5], ref[..., 5], rtol=1e-5, atol=1e-5)


def test_all_feature_maps_picks_conv_and_pool_layers(rng):
    m = small_cnn()
    x = rng.normal(size=(1, 24, 24, 3)).astype("float32")
    maps = F.all_feature_maps(m, x)
    assert list(maps) == ["conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1"]
    assert [v.shape for v in maps.values()] == [(1, 24, 24, 8), (1, 12, 12, 8), (1, 12, 12, 16), (1, 6, 6, 16)]
    assert list(F.all_feature_maps(m, x, kinds="pool")) == ["max_pooling2d", "max_pooling2d_1"]
    with pytest.raises(InputError, match="unknown layer kind"):
        F.all_feature_maps(m, x, kinds=("convolution",))


def test_standardize_has_the_stated_mean_and_std(rng):
    maps = rng.gamma(2.0, 3.0, size=(2, 9, 11, 6)) - 1.0
    maps[1, :, :, 4] = 7.25  # a constant channel
    raw = F.standardize(maps, clip=False)
    live = np.ones(6, bool)
    np.testing.assert_allclose(raw[0].mean(axis=(0, 1)), 128.0, atol=1e-9)
    np.testing.assert_allclose(raw[0].std(axis=(0, 1)), 64.0, atol=1e-9)
    live[4] = False
    np.testing.assert_allclose(raw[1][..., live].std(axis=(0, 1)), 64.0, atol=1e-9)
    assert np.all(raw[1, :, :, 4] == 128.0)
    strip = F.standardize(maps)
    assert strip.dtype == np.uint8 and np.all(strip[1, :, :, 4] == 128)
    # the article's loop, channel by channel
    ch = maps[0, :, :, 2]
    ref = np.clip((ch - ch.mean()) / ch.std() * 64 + 128, 0, 255)
    assert np.abs(strip[0, :, :, 2].astype(float) - ref).max() <= 0.5 + 1e-9
    zero = F.standardize(np.zeros((4, 4, 3)))
    assert np.all(zero == 128)


# ---------------------------------------------------------------- filters
def test_filters_normalised_over_the_layer_rgb_layout():
    m = small_cnn()
    k = m.get_layer("conv2d").params["kernel"]           # (3, 3, 3, 8)
    f = F.filters(m, "conv2d")
    assert f.shape == (8, 3, 3, 3)
    assert f.min() == 0.0 and f.max() == 1.0
    lo, hi = k.min(), k.max()
    np.testing.assert_allclose(f[5][..., 1], (k[:, :, 1, 5] - lo) / (hi - lo), rtol=1e-6)
    assert F.filters(m, "conv2d_1").shape == (16, 3, 3, 8)
    with pytest.raises(InputError, match="not a convolution"):
        F.filters(m, "dense")


def test_depthwise_and_separable_filters(rng):
    inp = npcnn.Input((10, 10, 3))
    d = DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)(inp)
    s = SeparableConv2D(4, 3, depth_multiplier=2, use_bias=False)(inp)
    m = npcnn.Model(inp, [d, s])
    dk = m.get_layer(m.layers[1].name).params["depthwise_kernel"]
    raw = F.raw_filters(m, m.layers[1].name)
    assert raw.shape == (6, 3, 3, 1)
    np.testing.assert_array_equal(raw[2 * 1 + 1, ..., 0], dk[:, :, 1, 1])  # output channel c*m + j
    # the effective kernel of a separable conv IS a conv kernel: a plain conv with it gives the same output
    sep = m.layers[2].name
    eff = F.raw_filters(m, sep)                                # (4, 3, 3, 3)
    x = rng.normal(size=(2, 10, 10, 3)).astype("float32")
    out = m.predict(x)[1]
    np.testing.assert_allclose(core.conv2d(x, eff.transpose(1, 2, 3, 0)), out, rtol=1e-4, atol=1e-5)
    assert F.raw_filters(m, sep, part="depthwise").shape == (6, 3, 3, 1)
    assert F.raw_filters(m, sep, part="pointwise").shape == (4, 1, 1, 6)
    w = F.layer_weights(m)
    assert sorted(w) == sorted([m.layers[1].name, sep]) and w[sep].size == 3 * 3 * 3 * 2 + 6 * 4


# ---------------------------------------------------------------- receptive fields
def vgg16_geometry(input_size=224):
    """VGG16's conv/pool stack with 2 filters per layer (only the geometry matters)."""
    layers, names = [], []
    for block, convs in enumerate([2, 2, 3, 3, 3], start=1):
        for i in range(1, convs + 1):
            layers.append(Conv2D(2, 3, padding="same", activation="relu", name=f"block{block}_conv{i}"))
        layers.append(MaxPooling2D(2, name=f"block{block}_pool"))
    layers[0].batch_input_shape = (None, input_size, input_size, 3)
    return npcnn.Sequential(layers)


# hand computed: each 3x3 conv adds 2 * jump, each 2x2 pool adds 1 * jump and doubles the jump
VGG16_RF = {"block1_conv1": (3, 1), "block1_conv2": (5, 1), "block1_pool": (6, 2),
            "block2_conv1": (10, 2), "block2_conv2": (14, 2), "block2_pool": (16, 4),
            "block3_conv1": (24, 4), "block3_conv2": (32, 4), "block3_conv3": (40, 4), "block3_pool": (44, 8),
            "block4_conv1": (60, 8), "block4_conv2": (76, 8), "block4_conv3": (92, 8), "block4_pool": (100, 16),
            "block5_conv1": (132, 16), "block5_conv2": (164, 16), "block5_conv3": (196, 16),
            "block5_pool": (212, 32)}


def test_receptive_field_vgg16_hand_computed():
    m = vgg16_geometry()
    for layer, (size, stride) in VGG16_RF.items():
        rf = F.receptive_field(m, layer)
        assert rf.size == (size, size) and rf.stride == (stride, stride), layer
    # 'same' 3x3 convs are centred: unit (0, 0) of a conv layer sees a window centred on pixel 0 ...
    assert F.receptive_field(m, "block1_conv2").offset == (0, 0)
    # ... and a 2x2 pool centres between pixels: block1_pool unit 0 covers rows -2..3 -> centre 0.5
    assert F.receptive_field(m, "block1_pool").offset == (0.5, 0.5)
    assert F.receptive_field(m, "block5_pool").offset == (15.5, 15.5)


def test_receptive_field_valid_padding_strides_dilation():
    inp = npcnn.Input((64, 64, 1))
    h = Conv2D(2, 5, name="c1")(inp)                                   # 5, jump 1, centre 2
    h = Conv2D(2, 3, strides=2, name="c2")(h)                           # 5 + 2 = 7, jump 2, centre 3
    h = Conv2D(2, 3, dilation_rate=2, name="c3")(h)                     # 7 + 2*2*2 = 15, jump 2, centre 7
    h = ZeroPadding2D(1, name="zp")(h)                                  # centre 7 - 2 = 5
    h = AveragePooling2D(3, strides=3, name="p")(h)                     # 15 + 2*2 = 19, jump 6, centre 7
    m = npcnn.Model(inp, h)
    assert F.receptive_field(m, "c1") == ((5, 5), (1, 1), (2, 2))
    assert F.receptive_field(m, "c2") == ((7, 7), (2, 2), (3, 3))
    assert F.receptive_field(m, "c3") == ((15, 15), (2, 2), (7, 7))
    assert F.receptive_field(m, "zp") == ((15, 15), (2, 2), (5, 5))
    assert F.receptive_field(m, "p") == ((19, 19), (6, 6), (7, 7))


def test_receptive_field_matches_the_support_of_the_input_gradient(rng):
    """Brute force: the input pixels a unit depends on are exactly its window (residual branches too)."""
    inp = npcnn.Input((40, 40, 1))
    a = Conv2D(3, 3, padding="same", name="a")(inp)
    b = Conv2D(3, 3, padding="same", name="b")(a)
    b = AveragePooling2D(3, strides=2, padding="same", name="pool")(b)
    short = Conv2D(3, 1, strides=2, padding="same", name="short")(a)
    s = Add(name="add")([b, short])
    c = Conv2D(3, 5, strides=2, name="c")(s)
    m = npcnn.Model(inp, c)
    for layer in m.layers[1:]:
        for p in layer.params.values():
            p[...] = np.abs(rng.normal(size=p.shape)) + 0.1        # positive: no cancellation
    x = np.ones((1, 40, 40, 1))
    m.astype("float64")
    for key in ["a", "b", "pool", "add", "c"]:
        rf = F.receptive_field(m, key)
        out = m.activations(x, key)[key]
        for pos in [(0, 0), (1, 2), (out.shape[1] // 2, out.shape[2] - 1)]:
            cot = np.zeros_like(out)
            cot[0, pos[0], pos[1], 0] = 1
            g = m.input_gradient(x, layer=key, cotangent=cot)[0, ..., 0]
            rows, cols = np.nonzero(g)
            for centre, jump, size, p, got in zip(rf.offset, rf.stride, rf.size, pos, (rows, cols)):
                lo = centre + p * jump - (size - 1) / 2
                assert got.min() == max(lo, 0) and got.max() == min(lo + size - 1, 39), (key, pos)


def test_window_slides_inside_the_image():
    rf = F.ReceptiveField((5, 5), (2, 2), (1, 1))
    assert F.window(rf, (0, 0), (20, 20)) == (0, 5, 0, 5)
    assert F.window(rf, (3, 9), (20, 20)) == (5, 10, 15, 20)   # centre 19: slid left to stay inside
    assert F.window(F.ReceptiveField((212, 212), (32, 32), (15.5, 15.5)), (2, 2), (100, 100)) == (0, 100, 0, 100)


# ---------------------------------------------------------------- dataset examples
def brute_force_top_k(acts, k, score="max"):
    s = acts.max(axis=(1, 2)) if score == "max" else acts.mean(axis=(1, 2))     # (N, C)
    order = np.array([np.lexsort((np.arange(len(s)), -s[:, c]))[:k] for c in range(s.shape[1])])
    return order, np.take_along_axis(s.T, order, axis=1)


@pytest.mark.parametrize("score", ["max", "mean"])
def test_top_k_images_equal_brute_force_ranking(rng, score):
    m = small_cnn(seed=3)
    x = rng.normal(size=(37, 24, 24, 3)).astype("float32")
    x[20] = x[5]  # a tie: the earlier image must come first
    top = F.top_k_images(m, x, "conv2d_1", k=5, batch_size=8, score=score, progress=False)
    acts = m.activations(x, "conv2d_1")["conv2d_1"]
    idx, vals = brute_force_top_k(acts, 5, score)
    np.testing.assert_array_equal(top.indices, idx)
    np.testing.assert_allclose(top.values, vals, rtol=1e-6)
    rf = F.receptive_field(m, "conv2d_1")
    assert top.patches.shape == (16, 5, 8, 8, 3) and rf.size == (8, 8)
    for c, r in [(0, 0), (7, 3), (15, 4)]:
        n = top.indices[c, r]
        y, xx = top.positions[c, r]
        assert acts[n, y, xx, c] == acts[n, ..., c].max()
        y0, y1, x0, x1 = top.boxes[c, r]
        np.testing.assert_array_equal(top.patches[c, r], x[n, y0:y1, x0:x1])
    # Dense units rank whole images
    dense = F.top_k_images(m, x, "dense", k=3, batch_size=8, progress=False)
    ref = m.activations(x, "dense")["dense"]
    np.testing.assert_array_equal(dense.indices, brute_force_top_k(ref[:, None, None, :], 3)[0])
    np.testing.assert_array_equal(dense.patches[2, 0], x[dense.indices[2, 0]])
    # an iterable of single images, a subset of channels, same answer
    sub = F.top_k_images(m, iter(list(x)), "conv2d_1", k=5, batch_size=6, channels=[3, 9], score=score,
                         progress=False)
    np.testing.assert_array_equal(sub.indices, idx[[3, 9]])


def test_top_k_images_from_a_folder(tmp_path, rng):
    from PIL import Image
    m = small_cnn(seed=4)
    imgs = rng.integers(0, 256, size=(7, 24, 24, 3)).astype(np.uint8)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / f"img_{i:02d}.png")
    pre = (lambda b: b / 255.0)
    top = F.top_k_images(m, str(tmp_path), "max_pooling2d", k=3, batch_size=3, preprocess=pre, progress=False)
    assert [f.split("/")[-1] for f in top.files] == [f"img_{i:02d}.png" for i in range(7)]
    acts = m.activations(imgs / 255.0, "max_pooling2d")["max_pooling2d"]
    idx, _ = brute_force_top_k(acts, 3)
    np.testing.assert_array_equal(top.indices, idx)


def test_progress_bars_can_be_silenced(rng, capsys):
    m = small_cnn()
    x = rng.normal(size=(5, 24, 24, 3)).astype("float32")
    F.top_k_images(m, x, "conv2d", k=2, batch_size=2, progress=True)
    F.maximize(m, F.channel("conv2d", 1), steps=2, progress=True)
    err = capsys.readouterr().err
    assert "top-2 conv2d" in err and "maximize channel('conv2d', 1)" in err
    F.top_k_images(m, x, "conv2d", k=2, batch_size=2, progress=False)
    F.maximize(m, F.channel("conv2d", 1), steps=2, progress=False)
    assert capsys.readouterr().err == ""


def test_receptive_field_of_a_real_mobilenet_v2():
    """Hand count (and Araujo et al., Distill 2019): stem 3 (jump 2); each 3x3 depthwise adds 2 * jump;
    stride-2 blocks 1, 3, 6, 13 double the jump -> 491 pixels, stride 32 at the last layer."""
    import os
    path = os.path.join(os.path.dirname(__file__), "fixtures", "tfjs", "nsfwjs_mobilenet_v2", "model.json")
    m = npcnn.load_model(path)
    # Conv1_pad pads ((0, 1), (0, 1)): unit 0 of the valid stride-2 stem sees rows 0..2, centre 1
    assert F.receptive_field(m, "Conv1") == ((3, 3), (2, 2), (1, 1))
    assert F.receptive_field(m, "block_1_depthwise")[:2] == ((11, 11), (4, 4))
    assert F.receptive_field(m, "block_6_depthwise")[:2] == ((75, 75), (16, 16))
    assert F.receptive_field(m, "out_relu")[:2] == ((491, 491), (32, 32))


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    given = None

if given is not None:
    layer_spec = st.tuples(st.sampled_from(["conv", "avg"]), st.integers(1, 4), st.integers(1, 3),
                           st.sampled_from(["valid", "same"]), st.integers(1, 2))

    @settings(max_examples=25, deadline=None)
    @given(specs=st.lists(layer_spec, min_size=1, max_size=4), size=st.integers(17, 26))
    def test_receptive_field_equals_gradient_support_on_random_stacks(specs, size):
        """Any stack of convs (kernel, stride, padding, dilation) and average pools: the input pixels a
        unit depends on span exactly its receptive-field window (inside the image; at a border, strides
        larger than kernels or dilation may leave the clipped end of the window unread)."""
        h = inp = npcnn.Input((size, size, 1))
        n = size
        for kind, k, s, pad, d in specs:
            eff = (k - 1) * d + 1 if kind == "conv" else k
            if pad == "valid" and n < eff:
                break
            h = (Conv2D(1, k, strides=s, padding=pad, dilation_rate=d if s == 1 else 1)(h) if kind == "conv"
                 else AveragePooling2D(k, strides=s, padding=pad)(h))
            n = h.shape[1]
        if h is inp:
            return
        m = npcnn.Model(inp, h).astype("float64")
        for layer in m.layers[1:]:
            for p in layer.params.values():
                p[...] = 1.0
        key = m.layers[-1].name
        rf = F.receptive_field(m, key)
        x = np.ones((1, size, size, 1))
        out = m.predict(x)
        for pos in {(0, 0), (out.shape[1] - 1, out.shape[2] - 1), (out.shape[1] // 2, 0)}:
            cot = np.zeros_like(out)
            cot[0, pos[0], pos[1], 0] = 1
            g = m.input_gradient(x, cotangent=cot)[0, ..., 0]
            for axis, got in enumerate(np.nonzero(g)):
                lo = rf.offset[axis] + pos[axis] * rf.stride[axis] - (rf.size[axis] - 1) / 2
                hi = lo + rf.size[axis] - 1
                if 0 <= lo and hi <= size - 1:  # the whole window is inside: its ends are read
                    assert (got.min(), got.max()) == (lo, hi), (specs, pos)
                elif got.size:  # hanging over the border: what is read lies in the clipped window
                    assert got.min() >= max(lo, 0) and got.max() <= min(hi, size - 1), (specs, pos)
                # else: every tap the unit reads is padding (a dilated "same" kernel on a 1x1 map): nothing read


@pytest.mark.parametrize("name,layer,size", [("VGG16", "block5_pool", 212), ("ResNet50", "conv5_block3_out", 483),
                                             ("InceptionV3", "mixed10", 1311), ("MobileNetV2", "out_relu", 491)])
def test_receptive_fields_of_keras_applications_match_the_published_values(name, layer, size):
    """Keras's own configs of keras.applications models; sizes as tabulated by Araujo, Norris & Sim,
    "Computing Receptive Fields of Convolutional Neural Networks" (Distill, 2019); stride 32 for all."""
    import json
    import os
    from npcnn.io import model_from_config
    path = os.path.join(os.path.dirname(__file__), "fixtures", "keras", f"{name}.notop.json")
    with open(path) as f:
        m = model_from_config(json.load(f))
    assert F.receptive_field(m, layer)[:2] == ((size, size), (32, 32))


def test_squeeze_excite_and_dense_units_are_global():
    inp = npcnn.Input((16, 16, 2))
    h = Conv2D(2, 3, padding="same", name="c")(inp)
    se = GlobalAveragePooling2D(keepdims=True, name="gap")(h)
    se = Conv2D(2, 1, name="se")(se)
    from npcnn.layers import Multiply
    out = Multiply(name="scaled")([h, se])
    m = npcnn.Model(inp, out)
    assert F.receptive_field(m, "gap") == ((18, 18), (0, 0), (7.5, 7.5))      # all 16 pixels + the padding
    # the gate scales every unit alike: the window that moves with a unit is the conv's
    assert F.receptive_field(m, "scaled") == F.receptive_field(m, "c") == ((3, 3), (1, 1), (0, 0))


@pytest.mark.parametrize("fmt", ["k2.h5", "k3.keras"])
def test_feature_maps_equal_keras_on_the_cats_vs_dogs_model(fmt):
    """The article's cats-vs-dogs CNN saved by Keras 2 and 3: every conv/pool map equals what Keras's
    Model(model.inputs, layer.output).predict(x) gave (reference dumped by tools/make_keras_fixtures.py)."""
    import os
    base = os.path.join(os.path.dirname(__file__), "fixtures", "keras", "cats_dogs")
    ref = np.load(base + ".ref.npz")
    m = npcnn.load_model(f"{base}.{fmt}")
    maps = F.all_feature_maps(m, ref["x"])
    assert list(maps) == ["conv1", "pool1", "conv2", "pool2", "conv3", "pool3"]
    for name, got in maps.items():
        want = ref[f"act/{name}"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
        np.testing.assert_array_less(np.abs(F.standardize(got).astype(int) - F.standardize(want).astype(int)), 2)
