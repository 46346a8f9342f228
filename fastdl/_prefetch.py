"""Prefetching: a background thread keeps the next batches of an iterator ready.

fit runs the training step while the producer augments (or loads) the following
batches: the kernels release the GIL, so the two overlap. The producer's kernels run on
one thread (fastdl._config.threads_in_this_thread), the step's on all of them. The queue is bounded; the
producer's exception (with its traceback) is raised in the consumer at the batch where
it happened; close() stops and joins the thread, whether training ended, stopped early
or was interrupted.
"""
import queue
import threading

from fastdl import _config


def check_queue_size(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_queue_size must be an int >= 1; got {value!r}")
    return value


class Prefetcher:
    """Iterate over `next_batch()` results, `total` of them at most, produced ahead by
    one daemon thread into a queue of max_size."""

    def __init__(self, next_batch, total, max_size=10):
        self._next_batch, self._total = next_batch, total
        self._queue = queue.Queue(check_queue_size(max_size))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="fastdl-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self):
        with _config.threads_in_this_thread(1):  # the training step has the cores (see there)
            self._produce_all()

    def _produce_all(self):
        for _ in range(self._total):
            if self._stop.is_set():
                return
            try:
                item = ("batch", self._next_batch())
            except StopIteration:
                self._put(("done", None))
                return
            except BaseException as exc:  # handed to the consumer, which raises it
                self._put(("error", exc))
                return
            if not self._put(item):
                return
        self._put(("done", None))

    def get(self):
        """The next batch; raises StopIteration when the source ran out, or the
        producer's exception."""
        while True:
            try:
                kind, value = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the prefetch thread ended without a result") from None
        if kind == "error":
            raise value
        if kind == "done":
            self._queue.put((kind, value))  # every later get() sees the end too
            raise StopIteration
        return value

    def close(self):
        """Stop the producer and wait for it (it finishes the batch it is making)."""
        self._stop.set()
        while True:  # unblock a put() waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
