"""npcnn.heap: glibc is asked to keep freed memory (no page faults for every layer's fresh arrays)."""
import sys

import pytest

from npcnn import heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_keep_freed_memory_on_glibc_unless_the_user_said_otherwise(monkeypatch):
    import platform
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    monkeypatch.delenv("MALLOC_TOP_PAD_", raising=False)
    monkeypatch.delenv("NPCNN_KEEP_HEAP", raising=False)
    assert heap.keep_freed_memory() is True
    monkeypatch.setenv("NPCNN_KEEP_HEAP", "0")
    assert heap.keep_freed_memory() is False
    monkeypatch.delenv("NPCNN_KEEP_HEAP")
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")  # the user's own glibc setting wins
    assert heap.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_layer_called_again_does_not_fault_in_fresh_pages(rng):
    """The point of it: the second and later calls of a layer reuse the freed heap (minor page faults
    counted by the kernel, not a timing)."""
    import resource
    import numpy as np
    from npcnn import layers as L
    layer = L.Conv2D(16, 3, padding="same", activation="relu")
    x = rng.standard_normal((1, 150, 150, 3)).astype(np.float32)
    layer.build(x.shape)
    for _ in range(3):
        layer.apply(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        layer.apply(x)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10 < 100  # ~1000 without
