"""The example scripts run end to end (on tiny synthetic data where the real data is not shipped)."""
import importlib.util
import os

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cats_vs_dogs_pipeline_on_a_tiny_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for k, cls in enumerate(("cats", "dogs")):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                img = rng.integers(0, 80, (60, 70, 3), dtype=np.uint8)
                img[..., k] += 150  # cats reddish, dogs greenish
                Image.fromarray(img).save(folder / f"{i}.jpg")
    out = tmp_path / "out"
    load_example("train_cats_vs_dogs").main([str(tmp_path / "data"), "--epochs", "1", "--batch-size", "4",
                                             "-o", str(out)])
    names = sorted(os.listdir(out))
    assert "cats_vs_dogs.keras" in names and "feature_map_strips.png" in names
    assert sum(n.startswith("filters_") for n in names) == 3
    import npcnn
    model = npcnn.load_model(str(out / "cats_vs_dogs.keras"))
    assert model.count_params() == 10_641_441  # the article's summary and model.input_shape == (None, 150, 150, 3)
