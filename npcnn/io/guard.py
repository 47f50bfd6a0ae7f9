"""One place that turns low-level failures (h5py, zipfile, json, a malformed value deep in a config)
into npcnn's FormatError naming the file and the step, so no raw traceback reaches the user."""
import contextlib
import zipfile

from ..errors import FormatError, NpcnnError


@contextlib.contextmanager
def reading(where, what):
    """Within the block, any non-npcnn failure becomes ``FormatError("<where>: <what> failed (...)")``."""
    try:
        yield
    except NpcnnError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError, EOFError,
            zipfile.BadZipFile, UnicodeDecodeError, OverflowError) as e:
        raise FormatError(f"{where}: {what} failed ({type(e).__name__}: {e}); the file may be truncated, "
                          "corrupt, or not what its name says") from None
