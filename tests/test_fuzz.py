"""A short seeded run of the model-file fuzzer (tools/fuzz_models.py): every mutant of every committed
fixture format loads or raises npcnn's own error; none raises anything else, hangs, runs out of memory,
kills the worker or runs code. The long run (10,000 mutants) is the documented command in that file."""
import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(os.path.dirname(HERE), "tools", "fuzz_models.py")


@pytest.fixture(scope="module")
def fuzz_models():
    spec = importlib.util.spec_from_file_location("fuzz_models", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_fuzz_run_has_no_failures(fuzz_models, tmp_path):
    summary = fuzz_models.fuzz(mutants=250, seed=11, out=str(tmp_path))
    counts = summary["counts"]
    assert sum(counts.values()) == 250
    assert summary["failed"] == 0, "\n\n".join(f"{f['what']}: {f['outcome']}: {f['message'][:600]}"
                                               for f in summary["failures"][:5])
    assert counts["loaded"] > 0 and counts["refused"] > 0  # both outcomes are exercised
    assert not os.path.exists(os.path.join(str(tmp_path), "failures"))


def test_worker_reports_the_hdf5_deadline(fuzz_models):
    """The harness sees npcnn's refusal of the libhdf5-hang fixture as a clean refusal, flagged as a deadline."""
    worker = fuzz_models.Worker(3 << 30)
    try:
        res = worker.run(os.path.join(HERE, "fixtures", "untrusted", "hdf5_hang.h5"), None, timeout=30)
    finally:
        worker.kill()
    assert res["outcome"] == "refused" and res["deadline"], res
