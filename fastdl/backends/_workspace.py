"""Scratch buffers that kernels reuse between calls instead of allocating each time."""
import threading

import numpy as np


class Workspace(threading.local):
    """Named flat buffers per thread, grown when a call needs more, never shrunk.

    `allocations` counts every buffer ever created, so tests can check that steady
    state allocates nothing.
    """

    allocations = 0
    _lock = threading.Lock()

    def __init__(self):
        self._buffers = {}

    def get(self, name, size, dtype):
        """A flat array of at least `size` elements of `dtype` (its first `size` returned)."""
        key = (name, np.dtype(dtype))
        buf = self._buffers.get(key)
        if buf is None or buf.size < size:
            buf = np.empty(size, dtype)
            self._buffers[key] = buf
            with Workspace._lock:
                Workspace.allocations += 1
        return buf[:size]
