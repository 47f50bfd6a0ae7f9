"""Callbacks: code the fit loop calls at the start and end of training and of every epoch, as Keras's.

    class Callback:
        on_train_begin(logs)  on_epoch_begin(epoch, logs)  on_epoch_end(epoch, logs)  on_train_end(logs)

``self.model`` is the model being trained and ``self.model.stop_training = True`` ends training after the
current epoch. ``logs`` at an epoch's end is the row History records: {"loss": .., "accuracy": ..,
"val_loss": .., "val_accuracy": .., "learning_rate": ..}.
"""
import math

import numpy as np

from ..errors import InputError


class Callback:
    """Does nothing; subclasses override the hooks they need."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class History(Callback):
    """Records every epoch's logs: ``history.history == {"loss": [...], "val_loss": [...], ...}``."""

    def __init__(self):
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def snapshot(model):
    """A copy of every weight array (Keras order), to restore later with ``model.set_weights``."""
    return [np.array(w, copy=True) for w in model.get_weights()]


class _Monitor(Callback):
    """Watches one logged quantity and remembers its best value ("min" for losses, "max" otherwise)."""

    def __init__(self, monitor="val_loss", mode="auto", min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            raise InputError(f"{type(self).__name__}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if any(s in monitor for s in ("acc", "auc", "precision", "recall")) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.best, self.best_epoch = None, None

    def current(self, logs):
        if self.monitor not in (logs or {}):
            raise InputError(f"{type(self).__name__} monitors {self.monitor!r}, but the logs only have "
                             f"{', '.join(sorted(logs or {}))} (val_* needs validation_data or validation_split)")
        return float(logs[self.monitor])

    def improved(self, value):
        """True (and the new best recorded) when ``value`` beats the best by more than min_delta."""
        if self.best is None or math.isnan(self.best):
            better = not math.isnan(value)
        elif self.mode == "min":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best = value
        return better

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch = None, None


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally roll back to the best
    epoch's weights at the end (``restore_best_weights``), as Keras's EarlyStopping."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", restore_best_weights=False,
                 start_from_epoch=0, verbose=0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best_weights = int(patience), bool(restore_best_weights)
        self.start_from_epoch, self.verbose = int(start_from_epoch), verbose
        self.wait, self.stopped_epoch, self.best_weights = 0, None, None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.wait, self.stopped_epoch, self.best_weights = 0, None, None

    def on_epoch_end(self, epoch, logs=None):
        value = self.current(logs)
        if epoch < self.start_from_epoch:
            return
        if self.improved(value):
            self.wait, self.best_epoch = 0, epoch
            if self.restore_best_weights:
                self.best_weights = snapshot(self.model)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        if self.verbose and self.stopped_epoch is not None:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping (best {self.monitor} "
                  f"{self.best:.4f} at epoch {self.best_epoch + 1})")


class ModelCheckpoint(_Monitor):
    """Keep the best weights seen (``save_best_only=True``) or the latest ones.

    In memory always (``best_weights``; ``restore=True`` puts them back in the model at the end of
    training); on disk too when ``filepath`` is given: ".npz" gets the weight arrays (np.savez, Keras
    order), anything else goes through ``model.save(filepath)`` (.keras / .h5). ``filepath`` may contain
    ``{epoch}`` and log names, as Keras's: "ckpt-{epoch:02d}-{val_loss:.3f}.keras".
    """

    def __init__(self, filepath=None, monitor="val_loss", save_best_only=True, mode="auto", restore=False,
                 verbose=0):
        super().__init__(monitor, mode)
        self.filepath, self.save_best_only, self.restore, self.verbose = filepath, save_best_only, restore, verbose
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = self.current(logs)
        if not self.improved(value) and self.save_best_only:
            return
        self.best_epoch, self.best_weights = epoch, snapshot(self.model)
        if self.filepath:
            path = str(self.filepath).format(epoch=epoch + 1, **(logs or {}))
            if path.endswith(".npz"):
                np.savez(path, *self.best_weights)
            else:
                self.model.save(path)
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} = {value:.4f}, saved {path}")

    def on_train_end(self, logs=None):
        if self.restore and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch: ``lr = schedule(epoch, lr)`` (epoch from 0);
    a one-argument ``schedule(epoch)`` works too. The rate used is logged as "learning_rate"."""

    def __init__(self, schedule, verbose=0):
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        try:
            lr = self.schedule(epoch, opt.learning_rate)
        except TypeError:
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, int, np.floating, np.integer)) or not math.isfinite(lr):
            raise InputError(f"LearningRateScheduler: the schedule returned {lr!r} at epoch {epoch}; "
                             "it must return a finite number")
        opt.learning_rate = float(lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {lr:.6g}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate
