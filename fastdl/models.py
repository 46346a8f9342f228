"""Sequential: a stack of layers with Keras's compile / fit / evaluate / predict.

All parameters live in one flat float32 buffer and all gradients in another (each
layer holds views), so the optimizer updates the whole model in one fused call.
Layer outputs are written into buffers sized on the first batch and reused.

A model built while the 'cuda' backend is selected lives on the GPU: parameters,
gradients, optimizer state and activations stay there; each batch is copied in once,
and only the per-sample losses (and, with metrics, the outputs) come back.

Threads: the layers' activation buffers belong to the model, so each batch's forward
pass (and a training step's backward pass and update) holds the model's lock.
predict, evaluate and their *_on_batch forms may be called from several threads at
once; they take turns batch by batch. While fit runs, another thread's predict sees
the weights between two steps. One model trains in one fit at a time: a second fit on
it (from another thread) raises RuntimeError.
"""
import dataclasses
import os
import sys
import threading
import warnings

import numpy as np

from fastdl import _config, _device, _prefetch, _weights_io
from fastdl import callbacks as callbacks_module
from fastdl import fusion, inference, losses, metrics as metrics_module, ops, optimizers
from fastdl.layers import InputLayer, KerasTensor, Layer
from fastdl.utils import new_generator

_COMPILE_NO_OPS = ("run_eagerly", "jit_compile", "steps_per_execution", "auto_scale_loss")


class Model:
    """A network of layers: Keras's functional Model(inputs, outputs), of which Sequential
    is the case of a chain. The layers run as steps (fastdl.fusion) in topological order,
    backward in reverse, gradients summed where a tensor feeds several layers. dtype is
    float32 (Keras's default); float64 is there for gradient checks.

    One input and one output for now: a model of several of either is refused."""

    def __init__(self, inputs=None, outputs=None, name=None, dtype="float32"):
        self._init_engine(name or "functional", dtype)
        if type(self) is Model:
            self._nodes, self.layers = _graph(inputs, outputs)

    def _init_engine(self, name, dtype):
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {dtype!r}")
        self.layers = []
        self.built = False
        self.compiled = False
        self.optimizer = None
        self.stop_training = False
        self.rng = new_generator()
        self.on_device = False
        self._lock = threading.RLock()  # the layers' buffers: one batch at a time
        self._fitting = False

    # -- structure -----------------------------------------------------------------------

    @property
    def input_shape(self):
        return self.layers[0].input_shape if self.layers else None

    def _graph_nodes(self):
        """[(layer, [input node indices])] in topological order, -1 the input, the
        output last."""
        return self._nodes

    @property
    def is_chain(self):
        """Whether each layer reads the one before (a Sequential model, or a functional
        one without branches)."""
        return all(inputs == [i - 1] for i, (_, inputs) in enumerate(self._graph_nodes()))

    def build(self, input_shape=None):
        """Fix every layer's shapes and lay the weights out in the flat buffers."""
        if not self.layers:
            raise ValueError("this Sequential model has no layers")
        shape = input_shape if input_shape is not None else self.input_shape
        if shape is None:
            raise ValueError("the input shape is unknown: pass input_shape= to the first layer, "
                             "start with Input(shape=...), or call build(input_shape)")
        shape = tuple(shape)
        if len(shape) and shape[0] is None:
            shape = shape[1:]  # Keras-style batch shape
        for layer in self.layers:
            if isinstance(layer, InputLayer):
                layer.build(shape)
        shapes = {-1: shape}
        for i, (layer, inputs) in enumerate(self._graph_nodes()):
            given = [shapes[j] for j in inputs]
            shapes[i] = layer.build(given if len(given) > 1 else given[0])
        specs = [(layer, spec) for layer in self.layers for spec in layer.weight_specs()]
        self._sizes = [int(np.prod(shape)) for _, (_, shape, _) in specs]
        total = sum(self._sizes)
        self.on_device = _config.backend_module().ARRAYS_ON_DEVICE
        # on a cache line, as the gradients and the optimizer's state: no vector of the
        # update straddles two lines
        self.flat_params = _device.aligned_empty(total, self.dtype)
        for (_, (_, shape, init)), start, size in zip(specs, np.cumsum([0] + self._sizes), self._sizes):
            self.flat_params[start:start + size] = init(shape, self.dtype, self.rng).reshape(-1)
        if self.on_device:  # initialised on the host (same values as on the CPU), copied once
            self.flat_params = _device.to_device(self.flat_params)
        self.flat_grads = _device.full((total,), self.dtype, 0, self.on_device)
        # the non-trainable weights in a buffer of their own: no optimizer step touches them
        state_specs = [spec for layer in self.layers for spec in layer.state_specs()]
        flat_states = _device.aligned_empty(sum(int(np.prod(shape)) for _, shape, _ in state_specs), self.dtype)
        start = 0
        for _, shape, init in state_specs:
            size = int(np.prod(shape))
            flat_states[start:start + size] = init(shape, self.dtype, self.rng).reshape(-1)
            start += size
        self.flat_states = _device.to_device(flat_states) if self.on_device else flat_states
        offset = state_offset = 0
        for layer in self.layers:
            params, grads, states = [], [], []
            for _, shape, _ in layer.weight_specs():
                size = int(np.prod(shape))
                params.append(self.flat_params[offset:offset + size].reshape(shape))
                grads.append(self.flat_grads[offset:offset + size].reshape(shape))
                offset += size
            for _, shape, _ in layer.state_specs():
                size = int(np.prod(shape))
                states.append(self.flat_states[state_offset:state_offset + size].reshape(shape))
                state_offset += size
            layer.attach(params, grads, states)
        self._device_batch = None
        self.built = True
        if self.compiled:
            self._configure_output()
        else:
            self._plan_steps()

    def _plan_steps(self):
        """The steps that run the layers (fastdl.fusion): Conv2D + MaxPooling2D fused, and
        the last layer's logits when the loss takes softmax outputs."""
        self._steps = fusion.plan(self._graph_nodes(), logits_last=getattr(self, "_softmax_outputs", False))
        # masks (Keras's masking, from Embedding(mask_zero=True)) are carried only when made
        self._masking = any(getattr(layer, "mask_zero", False) for layer in self.layers)
        inference.forget(self)

    def _check_input(self, x, allow_empty=False):
        if _device.is_device(x):
            raise TypeError("x must be host data (a NumPy array or an iterator of them); a model on "
                            "the GPU copies each batch to the device itself")
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if not self.built:
            with self._lock:  # two threads' first calls build once
                if not self.built:
                    # a declared input shape wins; otherwise the first data decides
                    self.build(None if self.input_shape is not None else x.shape[1:])
        expected = self.layers[0].input_shape
        if x.ndim != len(expected) + 1 or x.shape[1:] != expected:
            raise ValueError(f"input shape mismatch: the model expects (batch,) + {expected}; got {x.shape}")
        if len(x) == 0 and not allow_empty:
            raise ValueError("the input has no samples")
        return x

    def _as_batch(self, x):
        """A batch as C-contiguous host data of the model's dtype (uint8 images are
        converted here, one batch at a time)."""
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _device_input(self, x):
        """On the GPU, the batch copied into the reused device buffer (under the lock)."""
        if not self.on_device:
            return x
        if self._device_batch is None or self._device_batch.shape != x.shape:
            self._device_batch = _device.empty(x.shape, self.dtype, device=True)
        _device.copy_into(self._device_batch, x)
        return self._device_batch

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    def reset_states(self):
        """Every stateful recurrent layer's states back to zeros (Keras's reset_states)."""
        for layer in self.layers:
            if hasattr(layer, "reset_state"):
                layer.reset_state()

    reset_state = reset_states

    def summary(self, print_fn=print):
        """Layer, output shape and parameter count of each layer, and the totals."""
        if not self.built:
            self.build()
        rows = [(f"{layer.name} ({type(layer).__name__})", str((None,) + tuple(layer.output_shape)),
                 f"{layer.count_params():,}") for layer in self.layers]
        widths = [max(len(r[i]) for r in rows + [("Layer (type)", "Output Shape", "Param #")]) + 2
                  for i in range(3)]
        line = "".join(h.ljust(w) for h, w in zip(("Layer (type)", "Output Shape", "Param #"), widths))
        rule = "=" * len(line)
        print_fn(f'Model: "{self.name}"')
        print_fn(rule)
        print_fn(line)
        print_fn(rule)
        for r in rows:
            print_fn("".join(c.ljust(w) for c, w in zip(r, widths)))
        trainable = sum(layer.count_trainable_params() for layer in self.layers)
        print_fn(rule)
        print_fn(f"Total params: {self.count_params():,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {self.count_params() - trainable:,}")

    # -- compile -------------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        unknown = sorted(set(kwargs) - set(_COMPILE_NO_OPS))
        if unknown:
            raise TypeError(f"compile got unexpected arguments: {unknown}")
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self.metrics = [metrics_module.get(m) for m in (metrics or [])]
        self.compiled = True
        if self.built:
            self._configure_output()

    def _configure_output(self):
        """Train on logits when the model ends in softmax and the loss takes probabilities:
        the fused softmax + cross-entropy is exact and stable; predict still applies softmax."""
        self._from_logits = self.loss.from_logits
        self._softmax_outputs = (self.loss.fuses_softmax and not self.loss.from_logits
                                 and fusion.ends_in_softmax(self.layers[-1]))
        if self._softmax_outputs:
            self._from_logits = True
        self._plan_steps()

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"You must compile your model before {what}. "
                               "Use model.compile(optimizer, loss, metrics).")

    # -- computing -----------------------------------------------------------------------

    def _forward(self, x, training):
        values = [None] * len(self._steps) + [self._device_input(x)]  # [-1]: the input
        masks = [None] * len(values) if self._masking else None
        for i, step in enumerate(self._steps):
            given = [values[j] for j in step.inputs]
            if masks is not None:
                masks[i] = _step_mask(step, given, [masks[j] for j in step.inputs])
            values[i] = step.forward(given if len(given) > 1 else given[0], training)
        return values[-2]

    def _backward(self, dy):
        """Every step's backward pass from the output's gradient dy, in reverse order; a
        step's gradient is the sum of its readers' (fills the layers' grads)."""
        grads = {len(self._steps) - 1: dy}
        for i in range(len(self._steps) - 1, -1, -1):
            step, g = self._steps[i], grads.pop(i, None)
            if g is None:
                continue  # nothing after it reaches the output
            need_dx = any(j >= 0 for j in step.inputs)
            dx = step.backward(g, need_dx=need_dx)
            if not need_dx:
                continue
            for j, part in zip(step.inputs, dx if len(step.inputs) > 1 else [dx]):
                if j >= 0:
                    grads[j] = part if j not in grads else ops.add(grads[j], part)

    def _outputs_to_predictions(self, out):
        return ops.softmax(out) if getattr(self, "_softmax_outputs", False) else out

    def _check_labels(self, y, n):
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"x and y must have the same number of samples; got {n} and {len(y)}")
        return y

    @staticmethod
    def _check_sample_weight(weights, n):
        """None, or (n,) finite float64 weights, one per sample (Keras's sample_weight)."""
        if weights is None:
            return None
        try:
            weights = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"sample_weight must be numbers, one per sample; got {type(weights).__name__}") from None
        if weights.ndim == 2 and weights.shape[1] == 1:
            weights = weights[:, 0]
        if weights.shape != (n,):
            raise ValueError(f"sample_weight must have one weight per sample, shape ({n},); got {weights.shape}")
        if not np.isfinite(weights).all():
            raise ValueError("sample_weight must be finite")
        return weights

    def _batch_totals(self, y, out, weights=None):
        """{'loss' and each metric's name: (numerator, denominator)} of one batch: the
        loss's sum over samples (each times its weight) and their number, each metric's
        totals (fastdl.metrics, unweighted as Keras 3's `metrics`) from the predictions
        on the host."""
        loss_values = _device.to_host(self.loss.per_sample(y, out, self._from_logits))
        if weights is not None:
            loss_values = loss_values * weights
        totals = {"loss": (float(loss_values.sum()), float(len(loss_values)))}
        if self.metrics:
            predictions = _device.to_host(self._outputs_to_predictions(out))
            totals.update((metric.name, metric.totals(y, predictions)) for metric in self.metrics)
        return totals

    def train_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """One step: forward, loss, backward, one fused optimizer update."""
        self._require_compiled("training")
        x = self._as_batch(self._check_input(x))
        y = self._check_labels(y, len(x))
        logs = _ratios(self._train_step(x, y, weights=self._check_sample_weight(sample_weight, len(x))))
        return logs if return_dict else _as_list(logs)

    def _train_step(self, x, y, dist=None, weights=None):
        """Forward, loss, backward, update. With dist: x is this rank's shard of the
        global batch; gradients and logs are averaged over the whole global batch. With
        weights (N,): each sample's loss and gradient times its weight, the loss still
        divided by the batch size (Keras's sum_over_batch_size). Returns the batch's
        totals (_batch_totals), over every rank's share."""
        with self._lock:
            return self._locked_train_step(x, y, dist, weights)

    def _locked_train_step(self, x, y, dist, weights=None):
        names = ["loss"] + [metric.name for metric in self.metrics]
        if len(x):
            out = self._forward(x, training=True)
            totals = self._batch_totals(y, out, weights)
            dy = self.loss.gradient(y, out, self._from_logits)
            if weights is not None:
                dy = self._weighted(dy, weights)
            self._backward(dy)
        else:  # a global batch smaller than the number of ranks leaves this one idle
            self.flat_grads[:] = 0
            totals = {name: (0.0, 0.0) for name in names}
        if dist is not None:
            summed = dist.allreduce_sum([len(x)] + [v for name in names for v in totals[name]])
            dist.allreduce_mean_(self.flat_grads, len(x), int(summed[0]))  # the one Allreduce of the step
            totals = {name: (summed[1 + 2 * i], summed[2 + 2 * i]) for i, name in enumerate(names)}
        self._apply_gradients()
        return totals

    def _weighted(self, dy, weights):
        """dy (N, ...) with sample i's rows times weights[i]."""
        scale = np.ascontiguousarray(np.broadcast_to(
            weights.astype(self.dtype).reshape((-1,) + (1,) * (len(dy.shape) - 1)), dy.shape))
        return ops.multiply(dy, _device.to_device(scale) if self.on_device else scale, out=dy)

    def _apply_gradients(self):
        self.optimizer.apply_flat(self.flat_grads, self.flat_params, self._sizes)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        self._require_compiled("testing")
        x = self._check_input(x)
        y = self._check_labels(y, len(x))
        weights = self._check_sample_weight(sample_weight, len(x))
        with self._lock:
            logs = _ratios(self._batch_totals(y, self._forward(self._as_batch(x), training=False), weights))
        return logs if return_dict else _as_list(logs)

    def __call__(self, x, training=False):
        """The model on one batch, as Keras's model(x): predictions for x (N, ...); with
        training=True, in training mode (Dropout active), changing no weight."""
        if isinstance(training, np.ndarray) or training not in (True, False, None):
            raise TypeError(f"training must be True, False or None; got {training!r}")
        x = self._check_input(x)
        with self._lock:  # the outputs live in the layers' buffers until copied out
            if not training:  # checked once, the kernels called back to back (fastdl.inference)
                plan = inference.plan_for(self, x.shape)
                if plan is not None:
                    return plan.run(x)
            return _device.host_copy(self._outputs_to_predictions(
                self._forward(self._as_batch(x), training=bool(training))))

    def predict_on_batch(self, x):
        return self(x, training=False)

    def predict(self, x, batch_size=32, verbose="auto"):
        """Outputs for every sample of x, in batches of batch_size."""
        x = self._check_input(x)
        batch_size = _batch_size(batch_size)
        parts = [self.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts)

    def evaluate(self, x, y=None, batch_size=32, verbose="auto", sample_weight=None, return_dict=False):
        """Mean loss (and metrics) over all samples: [loss, metric, ...], or a dict."""
        self._require_compiled("evaluating")
        totals = {}
        for xb, yb, wb in self._batches(x, y, batch_size, shuffle=False, sample_weight=sample_weight):
            with self._lock:
                _accumulate(totals, self._batch_totals(yb, self._forward(xb, training=False), wb))
        logs = _ratios(totals)
        return logs if return_dict else _as_list(logs)

    def _checked_batch(self, batch, allow_empty=False):
        """(x, y, weights or None) from an iterator's (x, y) or (x, y, sample_weight)."""
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            size = f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""
            raise ValueError(f"each batch must be (x, y) or (x, y, sample_weight); got {type(batch).__name__}{size}")
        xb = self._as_batch(self._check_input(batch[0], allow_empty=allow_empty))
        yb = self._check_labels(batch[1], len(xb))
        return xb, yb, self._check_sample_weight(batch[2] if len(batch) == 3 else None, len(xb))

    def _batches(self, x, y, batch_size, shuffle, shard=(0, 1), sample_weight=None):
        """(x, y, weights or None) float32 batches of arrays, or whatever an iterator
        yields. With a shard (rank, size), this rank's share of each global batch."""
        if y is None and not isinstance(x, np.ndarray):
            if sample_weight is not None:
                raise ValueError("sample_weight goes with array inputs; an iterator yields (x, y, sample_weight)")
            for batch in _iterate(x):
                yield self._checked_batch(batch)
            return
        if y is None:
            raise ValueError("y is required when x is an array")
        x = self._check_input(x)
        y = self._check_labels(y, len(x))
        weights = self._check_sample_weight(sample_weight, len(x))
        batch_size = _batch_size(batch_size)
        order = self.rng.permutation(len(x)) if shuffle else None
        rank, size = shard
        for start in range(0, len(x), batch_size):
            if order is None and size == 1:
                idx = slice(start, start + batch_size)
            else:
                idx = (np.arange(start, min(start + batch_size, len(x))) if order is None
                       else order[start:start + batch_size])[rank::size]
            yield self._as_batch(x[idx]), y[idx], None if weights is None else weights[idx]

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            steps_per_epoch=None, distributed=False, workers=1, max_queue_size=10, sample_weight=None):
        """Train for `epochs` epochs on arrays (x, y) or a batch iterator such as
        ImageDataGenerator.flow(...); returns the History. sample_weight (N,) weighs each
        sample's loss with array inputs; an iterator may yield (x, y, sample_weight).

        The batches of an iterator, generator or Sequence are made ahead in a background
        thread (workers=1, the default: up to max_queue_size batches ready), overlapping
        the training steps; workers=0 makes each when its step needs it.

        distributed=True (under mpirun): data-parallel over MPI ranks, see
        fastdl.distributed; batch_size is the global batch, split between the ranks.
        """
        self._require_compiled("training")
        with self._lock:
            if self._fitting:
                raise RuntimeError("this model is already training in another fit (another thread?): "
                                   "one model trains in one fit at a time")
            self._fitting = True
        settings = FitSettings(batch_size, epochs, verbose, callbacks, validation_split, validation_data,
                               shuffle, initial_epoch, steps_per_epoch, workers, max_queue_size, sample_weight)
        try:
            return self._fit_maybe_distributed(x, y, settings, distributed)
        finally:
            self._fitting = False

    def _fit_maybe_distributed(self, x, y, settings, distributed):
        if distributed:
            from fastdl import distributed as dist

            if self.on_device:
                raise ValueError("distributed=True trains models on the CPU; this one is on the GPU "
                                 "(built under the 'cuda' backend)")
            dist.init(required=True)
            try:
                return self._fit(x, y, settings, dist)
            except dist.MismatchError:
                raise  # a start-up mismatch: every rank raises the same error
            except Exception as exc:  # anything else may be one rank only: stop them all
                dist.abort_on_error(exc)
        return self._fit(x, y, settings, None)

    def _fit(self, x, y, settings, dist):
        batch_size, epochs, verbose = settings.batch_size, settings.epochs, settings.verbose
        validation_split, validation_data = settings.validation_split, settings.validation_data
        shuffle, steps_per_epoch = settings.shuffle, settings.steps_per_epoch
        if not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1); got {validation_split!r}")
        if _device.is_device(x):
            self._check_input(x)  # raises: batches are cut from host data
        is_array = isinstance(x, np.ndarray) or isinstance(x, (list, tuple)) and y is not None
        weights = settings.sample_weight
        if is_array:
            x = self._check_input(x)
            y = self._check_labels(y, len(x))
            weights = self._check_sample_weight(weights, len(x))
            if validation_split:  # the last samples, as Keras (their weights stay with them)
                cut = int(len(x) * (1 - validation_split))
                validation_data = (x[cut:], y[cut:]) + (() if weights is None else (weights[cut:],))
                x, y = x[:cut], y[:cut]
                weights = None if weights is None else weights[:cut]
            # with steps_per_epoch, epochs of that many batches run on through the data,
            # a new (shuffled) pass starting whenever one ends
            steps = (-(-len(x) // _batch_size(batch_size)) if steps_per_epoch is None
                     else _steps_per_epoch(steps_per_epoch))
        else:
            if validation_split:
                raise ValueError("validation_split needs array inputs; pass validation_data instead")
            if weights is not None:
                raise ValueError("sample_weight goes with array inputs; an iterator yields (x, y, sample_weight)")
            steps = (_steps_per_epoch(steps_per_epoch) if steps_per_epoch is not None
                     else len(x) if hasattr(x, "__len__") else None)
            if steps is None:
                raise ValueError("an iterator without len() needs steps_per_epoch")
            source = _BatchSource(x, steps, max(epochs - settings.initial_epoch, 0), settings.workers,
                                  settings.max_queue_size)
        verbose = _resolve_verbose(verbose)
        shard = (0, 1)
        if dist is not None and dist.size() > 1:
            shard = (dist.rank(), dist.size())
            if not self.built:  # the weights must exist before rank 0's are broadcast
                sample_shape = getattr(x, "x", x).shape[1:] if self.input_shape is None else None
                self.build(sample_shape)
            self._start_distributed(dist, x if is_array else None, batch_size if is_array else
                                    getattr(x, "batch_size", None), steps)
            if not is_array:
                _shard_iterator(x, dist)
            if not dist.is_chief():
                verbose = 0  # only rank 0 prints
        self.is_chief = shard[0] == 0
        history = callbacks_module.History()
        cbs = list(settings.callbacks or []) + [history]  # after the user's, which may add to the logs
        if verbose:
            cbs.append(callbacks_module.ProgbarLogger(verbose))
        cb = callbacks_module.CallbackList(cbs, self, {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        if is_array:
            passes = self._passes(x, y, batch_size, shuffle, shard, weights)
        cb.on_train_begin()
        try:
            for epoch in range(settings.initial_epoch, epochs):
                cb.on_epoch_begin(epoch)
                totals = {}
                batches = (next(passes) for _ in range(steps)) if is_array else source.epoch()
                for step, batch in enumerate(batches):
                    # every rank takes part in every step: an empty share of a short last
                    # batch adds no gradient and no samples
                    xb, yb, wb = batch if is_array else self._checked_batch(batch, allow_empty=shard[1] > 1)
                    cb.on_train_batch_begin(step, {"size": len(xb) * shard[1]})  # as Keras 2 did: for throughput
                    _accumulate(totals, self._train_step(xb, yb, dist if shard[1] > 1 else None, wb))
                    cb.on_train_batch_end(step, _ratios(totals))
                    if self.stop_training:
                        break
                if not is_array and source.exhausted:
                    self.stop_training = True
                    if not totals or not totals["loss"][1]:
                        break
                epoch_logs = _ratios(totals)
                if validation_data is not None:
                    xv, yv, wv = _split_validation(validation_data)
                    val = self.evaluate(xv, yv, batch_size=batch_size, sample_weight=wv, return_dict=True)
                    epoch_logs.update({f"val_{k}": v for k, v in val.items()})
                cb.on_epoch_end(epoch, epoch_logs)
                if self.stop_training:
                    break
        finally:
            if not is_array:
                source.close()  # the prefetch thread, however the loop ended
        cb.on_train_end()
        return history

    def _passes(self, x, y, batch_size, shuffle, shard, weights):
        """The batches of pass after pass over arrays, for ever (fit cuts epochs from it)."""
        while True:
            yield from self._batches(x, y, batch_size, shuffle, shard, weights)

    def _start_distributed(self, dist, x, batch_size, steps):
        """Check that every rank runs the same job, then start from rank 0's weights,
        optimizer state and shuffling seed."""
        signature = [(type(layer).__name__, tuple(p.shape for p in layer.params)) for layer in self.layers]
        dist.check_same_everywhere("the model (layer types and weight shapes)", signature)
        dist.check_same_everywhere("the global batch size", batch_size)
        dist.check_same_everywhere("the number of samples", None if x is None else len(x))
        dist.check_same_everywhere("the number of steps per epoch", steps)
        dist.broadcast_(self.flat_params)
        if self.flat_states.size:  # the moving statistics start equal too (each rank then updates its own)
            dist.broadcast_(self.flat_states)
        self.optimizer.set_state(dist.broadcast_object(self.optimizer.get_state()))
        seed = dist.broadcast_object(int(self.rng.integers(2 ** 62)) if dist.is_chief() else None)
        self.rng = np.random.default_rng(seed)

    # -- weights -------------------------------------------------------------------------

    def get_weights(self):
        if not self.built:
            self.build()
        return [_device.host_copy(p) for layer in self.layers for p in layer.weights]

    def _check_weights(self, weights, source):
        """Every array's shape matches this model's, before anything is assigned."""
        expected = [p.shape for layer in self.layers for p in layer.weights]
        if len(weights) != len(expected):
            raise ValueError(f"{source} has {len(weights)} arrays; this model has {len(expected)} "
                             f"(shapes {expected})")
        for i, (w, shape) in enumerate(zip(weights, expected)):
            if tuple(np.shape(w)) != shape:
                raise ValueError(f"{source}: array {i} has shape {tuple(np.shape(w))}; this model "
                                 f"expects {shape} (weights of another architecture?)")

    def set_weights(self, weights):
        """Assign every weight; all are converted and checked first, so a bad array
        (wrong shape, complex, not numbers) changes nothing."""
        if not self.built:
            self.build()
        self._assign(self._converted(list(weights), "set_weights"))

    def _converted(self, weights, source):
        """The weights as arrays of the model's dtype, after every check has passed."""
        self._check_weights(weights, source)
        params = [p for layer in self.layers for p in layer.weights]
        converted = []
        for i, (p, w) in enumerate(zip(params, weights)):
            w = np.asarray(w)
            if w.dtype.kind not in "biuf":
                raise TypeError(f"{source}: array {i} has dtype {w.dtype}; weights must be real numbers "
                                f"(a complex array would lose its imaginary part)")
            converted.append(np.ascontiguousarray(w, dtype=p.dtype))
        return converted

    def _assign(self, weights):
        params = [p for layer in self.layers for p in layer.weights]
        for p, w in zip(params, weights):
            _device.copy_into(p, w)

    def save_weights(self, filepath):
        """Write every weight to filepath: '.weights.h5' as HDF5 in Keras 3's layout (needs
        h5py), '.npz' as a NumPy archive; atomically (fastdl._atomic: a crash mid-save
        leaves the old file or the new one; a symlink's target is replaced; the file's
        permissions are kept)."""
        if not self.built:
            self.build()
        _weights_io.save(filepath, self.name,
                         [(layer, [_device.host_copy(p) for p in layer.weights]) for layer in self.layers])

    def save(self, filepath):
        """The whole model (layers, weights, compile settings, optimizer state) as a Keras 3
        '.keras' file that keras.saving.load_model opens; atomically (fastdl.saving)."""
        from fastdl import saving

        saving.save_model(self, filepath)

    def load_weights(self, filepath):
        """Load weights saved by save_weights (or by Keras 3 into a .weights.h5 file for a
        model of the same layers); on any mismatch nothing changes."""
        if not self.built:
            self.build()
        weights = _weights_io.load(filepath, [(layer, len(layer.weights)) for layer in self.layers])
        self._assign(self._converted(weights, repr(os.fspath(filepath))))


class Sequential(Model):
    """A stack of layers, each reading the one before: the chain case of Model."""

    def __init__(self, layers=None, name=None, dtype="float32"):
        self._init_engine(name or "sequential", dtype)
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor) and isinstance(layer.producer, InputLayer):
            layer = layer.producer  # keras.Input(...) as the first entry
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a fastdl layer; got {type(layer).__name__}")
        if isinstance(layer, InputLayer) and self.layers:
            raise ValueError("an Input can only be the first entry of a Sequential model")
        self.layers.append(layer)
        self.built = False

    def _graph_nodes(self):
        return fusion.chain(self.layers)


def _graph(inputs, outputs):
    """(nodes, layers) of the functional model from inputs to outputs: the layers that
    make the output, in topological order (the output last), each with the node indices
    of its inputs (-1: the model's input)."""
    inputs, outputs = (list(t) if isinstance(t, (list, tuple)) else [t] for t in (inputs, outputs))
    for name, tensors in (("inputs", inputs), ("outputs", outputs)):
        if not tensors or not all(isinstance(t, KerasTensor) for t in tensors):
            raise TypeError(f"Model({name}=...) takes symbolic tensors (fastdl.Input(...) and the layers "
                            f"called on it); got {tensors!r}")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"fastdl's Model takes one input and one output for now; got {len(inputs)} inputs and "
                         f"{len(outputs)} outputs")
    source = inputs[0].producer
    if not isinstance(source, InputLayer):
        raise ValueError(f"Model's input must be an Input(...) tensor; got the output of {source.name!r}")
    # Keras's order (keras.src.ops.function.map_graph), so that weight lists and files
    # line up: by depth from the output, the deepest first, ties in the order a
    # depth-first walk from the output first meets them
    first_seen, finished, post_order = {}, set(), []

    def visit(layer, path):
        if id(layer) in finished:
            return
        if isinstance(layer, InputLayer) and layer is not source:
            raise ValueError(f"the output depends on the input {layer.name!r}, which is not among the "
                             f"Model's inputs")
        if id(layer) in path:
            raise ValueError(f"the graph has a cycle through layer {layer.name!r}")
        first_seen.setdefault(id(layer), len(first_seen))
        for tensor in layer._inbound:
            visit(tensor.producer, path | {id(layer)})
        finished.add(id(layer))
        post_order.append(layer)
    visit(outputs[0].producer, frozenset())
    depth = {}
    for layer in reversed(post_order):
        below = depth.setdefault(id(layer), 0) + 1
        for tensor in layer._inbound:
            depth[id(tensor.producer)] = max(depth.get(id(tensor.producer), 0), below)
    order = sorted((layer for layer in post_order if layer is not source),
                   key=lambda layer: (-depth[id(layer)], first_seen[id(layer)]))
    if not order:
        raise ValueError("the model has no layer between its input and its output")
    index = {id(layer): i for i, layer in enumerate(order)}
    nodes = [(layer, [index.get(id(t.producer), -1) for t in layer._inbound]) for layer in order]
    return nodes, [source] + order


def _step_mask(step, inputs, masks):
    """Give a one-layer step the mask reaching it (layers with an `input_mask` use it) and
    return the mask of its output: the layer's compute_mask, or none for a layer that
    does not support masking (the mask ends there, as in Keras)."""
    layer = getattr(step, "layer", None)
    mask = masks[0] if len(masks) == 1 else None
    if layer is None:
        return None
    if hasattr(layer, "input_mask"):
        layer.input_mask = mask
    return layer.compute_mask(inputs[0] if len(inputs) == 1 else inputs, mask)


def _steps_per_epoch(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"steps_per_epoch must be an int >= 1 or None; got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """fit's arguments besides the data, as one value handed down its helpers."""
    batch_size: int = 32
    epochs: int = 1
    verbose: object = "auto"
    callbacks: object = None
    validation_split: float = 0.0
    validation_data: object = None
    shuffle: bool = True
    initial_epoch: int = 0
    steps_per_epoch: object = None
    workers: int = 1
    max_queue_size: int = 10
    sample_weight: object = None


class _BatchSource:
    """The batches of fit's epochs from what fit was given instead of arrays:
    - an iterator (iter(x) is x: a generator, an ImageDataGenerator flow) is read on
      across epochs, `steps` batches each;
    - a Keras-style Sequence (len + indexing) gives x[0], x[1], ... every epoch, and its
      on_epoch_end() is called between epochs (before the next epoch's first batch is
      made, so that its new order is the one read) and after the last;
    - any other iterable (a list of batches) is iterated afresh every epoch.
    With workers=1 a background thread makes the batches ahead (fastdl._prefetch), up to
    max_queue_size of them; with workers=0 they are made when the step needs them.
    An iterator that runs dry stops training with a warning, as in Keras."""

    def __init__(self, x, steps, epochs, workers=1, max_queue_size=10):
        if workers not in (0, 1) or isinstance(workers, bool):
            raise ValueError(f"workers must be 0 (no background thread) or 1; got {workers!r}")
        self.x, self.steps, self.epochs = x, steps, epochs
        self.workers, self.max_queue_size = workers, _prefetch.check_queue_size(max_queue_size)
        self.iterator = iter(x)
        self.kind = ("iterator" if self.iterator is x else
                     "sequence" if hasattr(x, "__len__") and hasattr(x, "__getitem__") else "iterable")
        if self.kind == "sequence" and steps > len(x):
            raise ValueError(f"steps_per_epoch ({steps}) is more than the {len(x)} batches of "
                             f"{type(x).__name__}")
        self._stream = self._prefetcher = None
        self._consumed = 0

    def _end_sequence_epoch(self):
        if self.kind == "sequence" and hasattr(self.x, "on_epoch_end"):
            self.x.on_epoch_end()

    def _batches(self):
        """Every batch of every epoch, in order (the end of an epoch is the consumer's count)."""
        for epoch in range(self.epochs):
            if epoch:
                self._end_sequence_epoch()
            if self.kind == "sequence":
                yield from (self.x[i] for i in range(self.steps))
                continue
            if self.kind == "iterable":
                self.iterator = iter(self.x)
            for _ in range(self.steps):
                try:
                    batch = next(self.iterator)
                except StopIteration:  # the input ran dry: the stream ends
                    return
                yield batch

    def _next(self):
        if self._stream is None:  # started at the first batch: a distributed fit shards the flow first
            self._stream = self._batches()
            if self.workers:
                self._prefetcher = _prefetch.Prefetcher(lambda: next(self._stream), self.steps * self.epochs,
                                                        self.max_queue_size)
        return self._prefetcher.get() if self._prefetcher else next(self._stream)

    def epoch(self):
        for _ in range(self.steps):
            try:
                batch = self._next()
            except StopIteration:
                warnings.warn(f"the input ran out of data after fewer than steps_per_epoch * epochs "
                              f"batches ({self.steps} per epoch); training stops here", stacklevel=4)
                self.exhausted = True
                return
            self._consumed += 1
            yield batch

    def close(self):
        if self._prefetcher is not None:
            self._prefetcher.close()
        if self.epochs and self._consumed == self.steps * self.epochs:  # every epoch ran: the last ends too
            self._end_sequence_epoch()

    exhausted = False


def _shard_iterator(iterator, dist):
    """Give an ImageDataGenerator flow this rank's share of every batch, with the epoch
    order of rank 0 (augmentation stays rank-dependent)."""
    if not hasattr(iterator, "set_shard"):
        raise ValueError("distributed fit needs arrays or an ImageDataGenerator flow; "
                         f"got {type(iterator).__name__}")
    iterator.set_shard(dist.rank(), dist.size(), dist.broadcast_object(
        int(np.random.default_rng().integers(2 ** 62)) if dist.is_chief() else None))


def _accumulate(totals, batch):
    """Add a batch's (numerator, denominator) pairs to the running ones."""
    for name, (num, den) in batch.items():
        before = totals.get(name, (0.0, 0.0))
        totals[name] = (before[0] + num, before[1] + den)


def _ratios(totals):
    """Logs from totals: each numerator over its denominator (0 where that is 0, as
    Keras's Precision with nothing predicted positive)."""
    return {name: num / den if den else 0.0 for name, (num, den) in totals.items()}


def _as_list(logs):
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    return int(batch_size)


def _resolve_verbose(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2; got {verbose!r}")
    return verbose


def _split_validation(data):
    """(x, y, sample_weight) from validation_data: (x, y), (x, y, w) or an iterator."""
    if isinstance(data, tuple) and len(data) in (2, 3):
        return tuple(data) + (None,) * (3 - len(data))
    return data, None, None


def _iterate(source):
    """The batches of a Keras-style Sequence (len + indexing) once, or of any iterable."""
    if hasattr(source, "__len__") and hasattr(source, "__getitem__") and not isinstance(source, np.ndarray):
        for i in range(len(source)):
            yield source[i]
    else:
        yield from source


def load_model(filepath, compile=True):
    """A model from a '.keras' file (Keras 3's or fastdl's) or a legacy '.h5' full-model
    file (fastdl.saving.load_model)."""
    from fastdl import saving

    return saving.load_model(filepath, compile=compile)
