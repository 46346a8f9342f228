"""Keras-style callbacks: History, EarlyStopping, ModelCheckpoint, TerminateOnNaN,
LearningRateScheduler, CSVLogger, and the progress bar (ProgbarLogger)."""
import csv
import math
import os
import sys
import time
import warnings

import numpy as np

from fastdl import _weights_io


class Callback:
    """Hooks called by Model.fit; `self.model` is set before training starts."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass


class CallbackList:
    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            c.set_model(model)
            c.set_params(params)

    def __getattr__(self, hook):
        def call(*args, **kwargs):
            for c in self.callbacks:
                getattr(c, hook)(*args, **kwargs)
        return call


class History(Callback):
    """Records every epoch's logs: history[name] is a list, one value per epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _improvement(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b), mode


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by min_delta for `patience` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.better, self.mode = _improvement(mode, monitor)
        self.min_delta = abs(min_delta) * (1 if self.mode == "max" else -1)
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights, self.best_epoch = 0, 0, None, 0
        self.best = self.baseline if self.baseline is not None else (-math.inf if self.mode == "max" else math.inf)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(sorted(logs or {}))}",
                          stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self.better(value - self.min_delta, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping (best {self.monitor} {self.best:.4f} "
                      f"at epoch {self.best_epoch + 1})")


class ModelCheckpoint(Callback):
    """Save the weights after each epoch to filepath (formatted with epoch and logs, e.g.
    'ckpt-{epoch:02d}-{val_loss:.2f}.weights.h5' or '... .npz'); with save_best_only, only
    on improvement; or the whole model, to a name ending in '.keras' (model.save).
    save_weights_only defaults to what the file name says; a name that does not say what
    it holds is an error, not weights under a whole-model name or the reverse."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=None, mode="auto"):
        super().__init__()
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        weights_file = self.filepath.endswith((_weights_io.H5_SUFFIX, _weights_io.NPZ_SUFFIX))
        model_file = self.filepath.endswith(".keras")
        if save_weights_only is None:
            save_weights_only = not model_file
        if not save_weights_only and not model_file:
            raise ValueError(f"ModelCheckpoint saves the whole model (save_weights_only=False) to a "
                             f"filepath ending in '.keras'; got {self.filepath!r}")
        if save_weights_only and not weights_file:
            raise ValueError(f"ModelCheckpoint's filepath must end in '.weights.h5' or '.npz' to save "
                             f"weights; got {self.filepath!r}")
        self.save_weights_only = bool(save_weights_only)
        self.save_best_only = save_best_only
        self.better, self.mode = _improvement(mode, monitor)

    def on_train_begin(self, logs=None):
        self.best = -math.inf if self.mode == "max" else math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if getattr(self.model, "is_chief", True) is False:
            return  # only one process of a distributed run writes checkpoints
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None or not self.better(value, self.best):
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved {'weights' if self.save_weights_only else 'model'} to {path}")


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: invalid loss, terminating training")
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at each epoch's start to schedule(epoch, lr)."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = float(self.schedule(epoch, float(optimizer.current_learning_rate())))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"the schedule returned an invalid learning rate: {lr!r}")
        optimizer.learning_rate = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate set to {lr}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.current_learning_rate())


class CSVLogger(Callback):
    """One CSV row per epoch: epoch and every log value."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs=None):
        self._file = None
        if getattr(self.model, "is_chief", True) is False:
            return  # one process of a distributed run writes the log
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = None
        self._header_written = exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._file is None:
            return
        if self._writer is None:
            self._keys = sorted(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if not self._header_written:
                self._writer.writerow(["epoch"] + self._keys)
        self._writer.writerow([epoch] + [logs.get(k, "NA") for k in self._keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()


class ProgbarLogger(Callback):
    """Keras-style progress: a live bar with the ETA and samples per second on a terminal
    (verbose=1), one line per epoch otherwise (verbose=2), nothing with verbose=0."""

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._samples = 0
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}", file=self.stream)

    def on_train_batch_begin(self, batch, logs=None):
        self._samples += (logs or {}).get("size", 0)

    def on_train_batch_end(self, batch, logs=None):
        if self.verbose != 1:
            return
        now = time.perf_counter()
        steps = self.params.get("steps")
        if now - self._last_draw < 0.1 and (steps is None or batch + 1 < steps):
            return
        self._last_draw = now
        done = batch + 1
        elapsed = now - self._start
        per_step = elapsed / done
        if steps:
            width = 30
            filled = int(width * done / steps)
            bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
            eta = per_step * (steps - done)
            head = f"{done}/{steps} [{bar}] - ETA: {eta:.0f}s"
        else:
            head = f"{done}"
        print(f"\r{head}{self._throughput(elapsed)} - {_format(logs)}", end="", file=self.stream, flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self._start
        steps = self.params.get("steps") or 1
        line = (f"{steps}/{steps} - {elapsed:.0f}s {1000 * elapsed / steps:.0f}ms/step"
                f"{self._throughput(elapsed)} - {_format(logs)}")
        print(("\r" if self.verbose == 1 else "") + line, file=self.stream, flush=True)

    def _throughput(self, elapsed):
        return f" - {self._samples / elapsed:,.0f} samples/s" if self._samples and elapsed > 0 else ""


def _format(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
