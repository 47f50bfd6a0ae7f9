"""The HTML report in a real browser (Debian's chromium, headless): it opens, every image decodes, nothing
refers outside the file. Skipped where chromium is not installed."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from npcnn.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")

# Appended to a copy of the page: once loaded, the title says how many images decoded.
PROBE = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
         "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
         "document.title = 'IMAGES ' + ok + '/' + imgs.length; });</script>")


def chromium(*args, user_dir):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={user_dir}", "--virtual-time-budget=10000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    status = main(["report", os.path.join(ROOT, "weights", "fer_mini_xception.hdf5"),
                   os.path.join(ROOT, "weights", "samples", "astronaut.png"), "--box", "180,72,268,178",
                   "--method", "gradcam", "saliency", "occlusion", "--steps", "4", "-o", str(out)])
    assert status == 0
    return out


def test_every_image_decodes_in_chromium(report, tmp_path):
    html = report.read_text()
    assert not re.search(r"""(src|href)=['"](?!data:|#)""", html), "the page refers to something outside it"
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = chromium("--dump-dom", probe.as_uri(), user_dir=tmp_path / "profile").stdout
    found = re.search(r"<title>IMAGES (\d+)/(\d+)</title>", dom)
    assert found, dom[:500]
    ok, total = map(int, found.groups())
    assert total >= 5 and ok == total  # explain, first-layer maps, strips, filters, maximization


def test_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,1800", report.as_uri(), user_dir=tmp_path / "profile")
    import matplotlib.image
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.std() > 0.05  # a real page, not a white or error screen
    keep = os.environ.get("NPCNN_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
    assert np.isfinite(pixels).all()
