"""Training in pure NumPy: losses, optimisers, the fit loop, callbacks, batches and augmentation, IDX data.

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=64, validation_split=0.1)
    model.evaluate(x_test, y_test)          # [loss, accuracy]

``Model.compile/fit/evaluate`` delegate to :mod:`npcnn.train.fit`; the loop itself is :func:`train_step`.
"""
from .callbacks import Callback, EarlyStopping, History, LearningRateScheduler, ModelCheckpoint
from .data import ArrayBatches, Batches, DirectoryIterator, ImageDataGenerator
from .fit import compile, evaluate, fit, train_step, trainable_weights
from .idx import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx
from .losses import (BinaryCrossentropy, CategoricalCrossentropy, Loss, MeanSquaredError,
                     SparseCategoricalCrossentropy)
from .optimizers import SGD, Adam, Optimizer, RMSprop

__all__ = ["Callback", "EarlyStopping", "History", "LearningRateScheduler", "ModelCheckpoint", "ArrayBatches",
           "Batches", "DirectoryIterator", "ImageDataGenerator", "compile", "evaluate", "fit", "train_step",
           "trainable_weights", "FASHION_MNIST_CLASSES", "load_fashion_mnist", "read_idx", "BinaryCrossentropy",
           "CategoricalCrossentropy", "Loss", "MeanSquaredError", "SparseCategoricalCrossentropy", "SGD", "Adam",
           "Optimizer", "RMSprop"]
