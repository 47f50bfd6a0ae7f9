"""Real Keras opens the files npcnn writes and gets npcnn's numbers (runs only where TensorFlow is
installed: ``/work/venv-tf/bin/python -m pytest tests/test_keras_parity_write.py``).

Matrix: every small fixture model, loaded by npcnn from Keras 3 and from tf_keras files, saved by npcnn
as .keras (read by Keras 3) and .h5 (read by tf_keras and by Keras 3).
Known Keras limits, the same for files Keras writes itself (see tests/fixtures/keras/index.json,
"reload"): Keras 3 cannot rebuild a nested functional model from a Keras 2 .h5 config; Keras 3 reads
a Keras 2 hard_sigmoid with its own (different) formula; tf_keras cannot read Keras 3 configs, which
npcnn writes into .h5 only for models with Keras 3's hard_sigmoid.
"""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")

import npcnn  # noqa: E402

pytestmark = pytest.mark.tensorflow
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "keras")
MODELS = ["conv2d", "depthwise", "conv_transpose", "conv1d", "pooling2d", "normalization", "activations",
          "hard_sigmoid", "reshape", "merge", "cats_dogs", "branches", "multi_output", "nested_functional",
          "nested_sequential", "nested_shared"]
NESTED_FUNCTIONAL = {"nested_functional", "nested_shared"}


def keras_limit(name, source, ext, reader):
    if ext == ".h5" and reader == "keras" and name in NESTED_FUNCTIONAL:
        return "Keras 3 cannot rebuild nested functional models from Keras 2 .h5 configs (nor tf_keras's own)"
    if name == "hard_sigmoid" and source == ".k2.h5" and (ext == ".keras" or reader == "keras"):
        return "Keras 3 has no clip(0.2x+0.5) hard_sigmoid"
    if name == "hard_sigmoid" and source == ".k3.keras" and reader == "tf_keras":
        return "tf_keras has no relu6(x+3)/6 hard_sigmoid; npcnn writes this .h5 in Keras 3's dialect"
    return None


@pytest.mark.parametrize("ext,reader", [(".keras", "keras"), (".h5", "tf_keras"), (".h5", "keras")])
@pytest.mark.parametrize("source", [".k3.keras", ".k2.h5"])
@pytest.mark.parametrize("name", MODELS)
def test_keras_reads_npcnn_files(name, source, ext, reader, tmp_path):
    why = keras_limit(name, source, ext, reader)
    if why:
        pytest.skip(why)
    model = npcnn.load_model(os.path.join(FIX, name + source))
    ref = np.load(os.path.join(FIX, f"{name}.ref.npz"))
    xs = [ref["x"]] if "x" in ref.files else [ref["x0"], ref["x1"]]
    feed = xs if len(xs) > 1 else xs[0]
    want = model.predict(feed)
    path = str(tmp_path / f"{name}{ext}")
    model.save(path)
    loader = {"keras": keras.models.load_model, "tf_keras": tf_keras.models.load_model}[reader]
    got = loader(path, compile=False).predict(feed, verbose=0)
    for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
        assert np.abs(np.asarray(g) - w).max() <= 1e-5 * max(1.0, np.abs(w).max())
