"""Training data: the IDX reader, image folders streamed in batches, seeded augmentation."""
import gzip
import os

import numpy as np
import pytest

import npcnn
from npcnn import layers as L
from npcnn import train
from npcnn.errors import FormatError, InputError
from npcnn.train import ImageDataGenerator

PIL = pytest.importorskip("PIL.Image")


# ------------------------------------------------------------------ IDX
def _idx_bytes(arr, code):
    header = bytes([0, 0, code, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int16, 0x0B), (np.float32, 0x0D)])
def test_read_idx_plain_and_gzip(tmp_path, dtype, code):
    arr = (np.arange(2 * 3 * 4) * 3 - 7).reshape(2, 3, 4).astype(dtype) if dtype != np.uint8 else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain, packed = tmp_path / "a-idx3", tmp_path / "a-idx3.gz"
    plain.write_bytes(_idx_bytes(arr, code))
    packed.write_bytes(gzip.compress(_idx_bytes(arr, code)))
    for path in (plain, packed):
        got = train.read_idx(path)
        assert got.dtype == np.dtype(dtype) and np.array_equal(got, arr)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x02" + np.array([3, 3], ">u4").tobytes() + bytes(5))
    with pytest.raises(FormatError, match="9 bytes of data"):
        train.read_idx(bad)
    bad.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(FormatError, match="not an IDX"):
        train.read_idx(bad)
    with pytest.raises(InputError, match="dataset-fashion-mnist"):
        train.load_fashion_mnist(str(tmp_path))


@pytest.mark.skipif(not os.path.isdir(train.idx.FASHION_MNIST_DIR), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_files_agree_with_the_committed_subset():
    (x, y), (xt, yt) = train.load_fashion_mnist()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert sorted(np.unique(y)) == list(range(10)) and np.bincount(yt).tolist() == [1000] * 10
    sub = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "fashion_mnist", "subset.npz"))
    assert np.array_equal(x[sub["train_index"]], sub["x_train"]) and np.array_equal(yt[sub["test_index"]],
                                                                                       sub["y_test"])


# ------------------------------------------------------------------ image folders
@pytest.fixture()
def folder(tmp_path):
    """cats/ (3 images) and dogs/ (2 images), 6x5 RGB PNGs with known pixels, plus a stray text file."""
    r = np.random.default_rng(0)
    pixels = {}
    for cls, n in (("cats", 3), ("dogs", 2)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            img = r.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            PIL.fromarray(img).save(tmp_path / cls / f"{i}.png")
            pixels[f"{cls}/{i}.png"] = img
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    return tmp_path, pixels


def test_flow_from_directory_reads_every_image_with_its_class(folder):
    root, pixels = folder
    it = ImageDataGenerator(rescale=1 / 255).flow_from_directory(root, target_size=(6, 5), class_mode="binary",
                                                                 batch_size=2, shuffle=False)
    assert it.class_indices == {"cats": 0, "dogs": 1} and it.classes.tolist() == [0, 0, 0, 1, 1]
    assert len(it) == 3 and [f.replace(os.sep, "/") for f in it.filenames] == sorted(pixels)
    batches = list(it)
    assert [b[0].shape for b in batches] == [(2, 6, 5, 3), (2, 6, 5, 3), (1, 6, 5, 3)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    want = np.stack([pixels[k] for k in sorted(pixels)]).astype(np.float32) / 255
    np.testing.assert_allclose(x, want, rtol=1e-6)
    assert y.tolist() == [0, 0, 0, 1, 1]
    gray = ImageDataGenerator().flow_from_directory(root, target_size=(3, 4), color_mode="grayscale",
                                                    class_mode="sparse", batch_size=5)
    xb, yb = next(iter(gray))
    assert xb.shape == (5, 3, 4, 1) and sorted(yb.tolist()) == [0, 0, 0, 1, 1]


def test_fit_on_a_folder_end_to_end(folder):
    root, _ = folder
    npcnn.set_seed(0)
    model = npcnn.Sequential([L.Conv2D(2, 3, input_shape=(6, 5, 3), activation="relu"), L.Flatten(),
                              L.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    gen = ImageDataGenerator(rescale=1 / 255, horizontal_flip=True, rotation_range=10)
    data = gen.flow_from_directory(root, target_size=(6, 5), batch_size=2, seed=1)
    history = model.fit(data, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    loss, acc = model.evaluate(ImageDataGenerator(rescale=1 / 255).flow_from_directory(
        root, target_size=(6, 5), batch_size=5, shuffle=False))
    assert 0 <= acc <= 1 and np.isfinite(loss)


def test_folder_errors(tmp_path, folder):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    (tmp_path / "empty" / "a" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        ImageDataGenerator().flow_from_directory(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    with pytest.raises(InputError, match="no class sub-folders"):
        ImageDataGenerator().flow_from_directory(tmp_path / "flat")
    with pytest.raises(InputError, match="not a folder"):
        ImageDataGenerator().flow_from_directory(tmp_path / "missing")
    root, _ = folder
    (root / "birds").mkdir()
    PIL.fromarray(np.zeros((6, 5, 3), np.uint8)).save(root / "birds" / "0.png")
    with pytest.raises(InputError, match="exactly 2 class folders"):
        ImageDataGenerator().flow_from_directory(root, class_mode="binary")
    (root / "birds" / "1.png").write_bytes(b"\x89PNG broken")
    it = ImageDataGenerator().flow_from_directory(root, target_size=(6, 5), batch_size=10, shuffle=False)
    with pytest.raises(FormatError, match="1.png"):
        next(iter(it))
    # a binary model fed 3-class one-hot labels stops before the first epoch
    npcnn.set_seed(0)
    model = npcnn.Sequential([L.Flatten(input_shape=(6, 5, 3)), L.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    ok = ImageDataGenerator().flow_from_directory(root, target_size=(6, 5), classes=["cats", "dogs", "birds"])
    with pytest.raises(InputError, match="binary"):
        model.fit(ok, epochs=1, verbose=0)


# ------------------------------------------------------------------ augmentation
def _image(h=7, w=7, c=2, seed=0):
    return np.random.default_rng(seed).random((1, h, w, c)).astype(np.float32)


def test_resample_identity_shift_and_quarter_turn():
    gen = ImageDataGenerator()
    x = _image()
    eye = np.eye(3)[None]
    np.testing.assert_allclose(gen._resample(x, eye), x, atol=1e-6)
    # a shift by (2, -1): output (r, c) reads input (r + 2, c - 1); beyond the edge, the edge pixel
    shift = np.array([[[1, 0, 2], [0, 1, -1], [0, 0, 1.0]]])
    want = x[:, np.clip(np.arange(7) + 2, 0, 6)][:, :, np.clip(np.arange(7) - 1, 0, 6)]
    np.testing.assert_allclose(gen._resample(x, shift), want, atol=1e-6)
    constant = ImageDataGenerator(fill_mode="constant", cval=-1)._resample(x, shift)
    assert np.all(constant[:, 5:] == -1) and np.all(constant[:, :, 0] == -1)
    # a 90 degree rotation about the centre is an exact pixel permutation: np.rot90
    turn = np.array([[[0, -1, 6], [1, 0, 0], [0, 0, 1.0]]])
    np.testing.assert_allclose(gen._resample(x, turn), np.rot90(x, k=-1, axes=(1, 2)), atol=1e-5)


def test_transform_matrices_follow_the_ranges():
    gen = ImageDataGenerator(rotation_range=30, width_shift_range=0.1, height_shift_range=0.2, zoom_range=0.25)
    mats = gen.transform_matrices(500, (20, 10), np.random.default_rng(0))
    lin = mats[:, :2, :2]
    zoom = np.sqrt(np.abs(np.linalg.det(lin)))  # rotation has det 1, so det = zx * zy
    assert zoom.min() >= 0.75 and zoom.max() <= 1.25
    angles = np.degrees(np.arctan2(lin[:, 1, 0], lin[:, 0, 0]))  # zoom rescales rows/columns, not the sign
    assert np.abs(angles).max() <= 30.5 and np.abs(angles).max() > 25
    centre = np.array([9.5, 4.5, 1.0])
    moved = np.einsum("nij,j->ni", mats, centre)[:, :2] - centre[:2]  # where the centre pixel reads from
    # the shift (up to 4 rows, 1 column) is applied in the rotated frame, so its length is what is bounded
    dist = np.hypot(moved[:, 0], moved[:, 1])
    assert dist.max() <= np.hypot(0.2 * 20, 0.1 * 10) + 1e-9 and dist.max() > 3


def test_augmentation_is_seeded_and_flips_are_mirrors():
    x = np.random.default_rng(1).integers(0, 256, (16, 8, 8, 1)).astype(np.uint8)
    gen = ImageDataGenerator(rescale=1 / 255, horizontal_flip=True)
    a = [b[0] for b in gen.flow(x, batch_size=4, shuffle=False, seed=3)]
    b = [b[0] for b in gen.flow(x, batch_size=4, shuffle=False, seed=3)]
    c = [b[0] for b in gen.flow(x, batch_size=4, shuffle=False, seed=4)]
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))
    out, ref = np.concatenate(a), x.astype(np.float32) * np.float32(1 / 255)
    flipped = np.array([np.array_equal(o, r[:, ::-1]) for o, r in zip(out, ref)])
    same = np.array([np.array_equal(o, r) for o, r in zip(out, ref)])
    assert np.all(flipped | same) and flipped.any() and same.any()
    heavy = ImageDataGenerator(rotation_range=40, zoom_range=0.2, width_shift_range=0.2)
    moved = np.concatenate([b[0] for b in heavy.flow(x, batch_size=16, seed=0)])
    assert moved.min() >= 0 and moved.max() <= 255 and not np.allclose(np.sort(moved, 0), np.sort(x, 0))


def test_shift_ranges_of_one_or_more_are_pixels():
    """Keras's convention: width_shift_range=0.5 is half the width, width_shift_range=3 is 3 pixels."""
    rng = np.random.default_rng(0)
    centre = np.array([9.5, 4.5, 1.0])
    for hs, ws, bound in ((0.5, 0, (10, 0)), (3, 2, (3, 2))):
        mats = ImageDataGenerator(height_shift_range=hs, width_shift_range=ws).transform_matrices(400, (20, 10), rng)
        moved = np.abs(np.einsum("nij,j->ni", mats, centre)[:, :2] - centre[:2]).max(0)
        assert np.all(moved <= bound) and moved[0] > 0.9 * bound[0]
