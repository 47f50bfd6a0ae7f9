"""Outputs are written atomically: an interrupted write leaves the previous file intact."""
import os

import pytest

import npcnn
from npcnn.atomic import atomic_open, atomic_path


def test_interrupted_write_keeps_previous_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as f:
            f.write(b"half of the new con")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary left behind


def test_complete_write_replaces(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_open(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new"


def test_unwritable_folder_is_a_clear_error(tmp_path):
    with pytest.raises(npcnn.InputError, match="does not exist"):
        with atomic_path(tmp_path / "missing" / "x.png"):
            pass
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(npcnn.InputError, match="not writable"):
            with atomic_path(ro / "x.png"):
                pass
    finally:
        os.chmod(ro, 0o700)
