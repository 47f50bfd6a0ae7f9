"""Image loading: every mode Pillow may hand us becomes a clean float32 array, or a clear InputError."""
import warnings

import numpy as np
import pytest
from PIL import Image

import npcnn
from npcnn import images


def test_rgb_and_grayscale_and_resize(tmp_path):
    arr = (np.arange(20 * 30 * 3) % 256).astype(np.uint8).reshape(20, 30, 3)
    p = tmp_path / "a.png"
    Image.fromarray(arr).save(p)
    x = images.load_image(str(p))
    assert x.dtype == np.float32 and x.shape == (20, 30, 3)
    np.testing.assert_array_equal(x, arr)
    g = images.load_image(str(p), size=(10, 15), grayscale=True)
    assert g.shape == (10, 15, 1) and 0 <= g.min() and g.max() <= 255


def test_16bit_png_is_scaled_to_0_255(tmp_path):
    arr = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    x = images.load_image(str(p))
    assert x.shape == (8, 8, 3)
    assert x.max() == pytest.approx(255, abs=0.01) and x.min() == 0


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (12, 9), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    x = images.load_image(str(p))
    assert x.shape == (9, 12, 3)
    assert x[..., 0].mean() > 200 and x[..., 1].mean() < 60


def test_alpha_is_dropped_with_a_warning(tmp_path):
    p = tmp_path / "rgba.png"
    Image.new("RGBA", (5, 5), (10, 20, 30, 0)).save(p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = images.load_image(str(p))
    assert x.shape == (5, 5, 3) and np.allclose(x, 255)  # fully transparent -> white
    assert any("alpha" in str(w.message) for w in caught)


def test_not_an_image_and_missing_file(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("hello")
    with pytest.raises(npcnn.InputError, match="not an image"):
        images.load_image(str(p))
    with pytest.raises(npcnn.InputError, match="not found"):
        images.load_image(str(tmp_path / "nope.png"))


def test_huge_png_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    p = tmp_path / "big.png"
    Image.new("L", (200, 100)).save(p)
    with pytest.raises(npcnn.InputError, match="MP"):
        images.load_image(str(p))


def test_huge_jpeg_is_shrunk_while_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 40_000)
    p = tmp_path / "big.jpg"
    Image.new("RGB", (800, 400), (0, 128, 255)).save(p)
    x = images.load_image(str(p), size=(50, 100))
    assert x.shape == (50, 100, 3)


@pytest.mark.parametrize("mode", list(images.PREPROCESS_MODES))
def test_preprocess_round_trip(mode):
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(images.deprocess(images.preprocess(x, mode), mode), x, atol=1e-3)


def test_caffe_matches_keras_convention():
    x = np.zeros((1, 1, 1, 3), np.float32) + np.array([10, 20, 30], np.float32)
    np.testing.assert_allclose(images.preprocess(x, "caffe")[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68],
                               rtol=1e-6)


def test_unknown_mode_and_bad_crop():
    with pytest.raises(npcnn.InputError, match="unknown preprocessing"):
        images.preprocess(np.zeros((2, 2, 3)), "bgr")
    with pytest.raises(npcnn.InputError, match="outside"):
        images.crop(np.zeros((4, 4, 3)), (0, 0, 9, 9))
