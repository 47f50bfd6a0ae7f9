"""npcnn's runtime needs numpy, h5py, matplotlib and tqdm only: no deep-learning framework anywhere."""
import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "npcnn"
FORBIDDEN = {"tensorflow", "keras", "tf_keras", "torch", "jax", "jaxlib", "tensorflowjs", "onnx", "scipy", "sklearn"}


def test_no_framework_import_in_source():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_npcnn_loads_no_framework():
    code = ("import sys, npcnn, npcnn.model, npcnn.conv; "
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
