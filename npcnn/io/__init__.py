"""Keras files in and out, without TensorFlow: every Keras format read, .keras and .h5 written.

    load_model(path, config=None)   any Keras model file (format from its content); config= for weights-only
    model_from_config(config)       an architecture (dict / JSON text / path), fresh weights
    save_model(model, path)         ".keras" (Keras 3 archive) or ".h5" (Keras 2 layout); Model.save calls it

The config reader (:mod:`.config`) turns names into classes only through ``npcnn.layers.CLASSES`` and
refuses code-carrying files (:mod:`.safety`) before anything is built; weight readers (:mod:`.weights`)
know each layout; HDF5 files are read by a child process under a deadline (:mod:`.hdf5`: libhdf5 can loop
forever on a damaged file) and every size a file declares is checked before allocating (:mod:`.guard`);
nothing here knows about gradients.
"""
from .load import load_model, model_from_config
from .writer import save_model

__all__ = ["load_model", "model_from_config", "save_model"]
