"""Timing that is fair on a shared, noisy machine: warm up, interleave, take medians."""
import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional


@dataclass
class Case:
    """One operation on one shape.

    candidates: label -> zero-argument callable; "fastdl" is one of them except in rows
    that time a baseline's own overhead (a layout conversion, say).
    work: floating-point operations (unit "GFLOP/s"), bytes moved (unit "GB/s") or
    images or batches made ("k img/s", "k batch/s") per call, for the achieved-throughput
    column and (FLOP and bytes) the roofline plot.
    check: called once after warm-up, before timing; raises if outputs disagree.
    setup: called once before anything runs (thread counts for this case, say).
    repeats: rounds for this case when it should not take the suite's count (slow cases).
    measure: for cases timed outside this process (whole epochs in a fresh process, with
    their peak memory): returns {label: [seconds, ...]} and may fill `notes`.
    """

    suite: str
    name: str
    shape: str
    candidates: Dict[str, Callable[[], object]]
    work: float = 0.0
    unit: str = "GFLOP/s"
    check: Optional[Callable[[], None]] = None
    notes: Dict[str, str] = field(default_factory=dict)
    setup: Optional[Callable[[], None]] = None
    repeats: Optional[int] = None
    measure: Optional[Callable[[], Dict[str, list]]] = None


@dataclass
class Timing:
    median: float
    minimum: float
    maximum: float
    samples: int


# Libraries in one process disturb each other's short calls: after a call, OpenMP
# runtimes (fastdl's libgomp, PyTorch's own copy) and TensorFlow's pools spin-wait for
# a few milliseconds, and on a 2-core machine that takes a core from whoever runs next
# (a 0.1 ms pooling call measured 0.1 ms alone, 0.3 ms right after PyTorch's). So before
# a timed call shorter than SETTLE_BELOW, the harness waits SETTLE seconds for the other
# libraries' threads to go idle and makes SETTLE_CALLS untimed calls to bring this one's
# back to their steady state: each library is timed as it runs on its own (the same
# medians as calling it alone in a loop), none at the expense of another.
SETTLE = 0.01
SETTLE_BELOW = 0.05
SETTLE_CALLS = 2


def run_case(case, repeats=15, warmup=3, min_seconds=0.0):
    """Time every candidate of `case`: warm-up calls first (JIT, lazy init, graph
    tracing, workspace sizing), then `repeats` rounds calling each candidate once per
    round, the order rotating each round, so drift hits all of them alike; short calls
    are settled first (see SETTLE)."""
    if case.setup is not None:
        case.setup()
    if case.repeats is not None:
        repeats, warmup = case.repeats, min(warmup, 1)
    if case.measure is not None:
        measured = case.measure()
        return {name: Timing(statistics.median(s), min(s), max(s), len(s)) for name, s in measured.items()}
    for fn in case.candidates.values():
        for _ in range(warmup):
            fn()
    if case.check is not None:
        case.check()
    names = list(case.candidates)
    samples = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        rounds = 0
        while rounds < repeats or time.perf_counter() - start < min_seconds:
            order = names[rounds % len(names):] + names[:rounds % len(names)]
            for name in order:
                fn = case.candidates[name]
                if samples[name] and samples[name][-1] < SETTLE_BELOW:
                    time.sleep(SETTLE)
                    for _ in range(SETTLE_CALLS):
                        fn()
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
            rounds += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(statistics.median(s), min(s), max(s), len(s)) for name, s in samples.items()}


def split_by_backend(case, backends):
    """Replace the 'fastdl' candidate by one per fastdl backend ('fastdl[numba]', ...)."""
    import fastdl

    run = case.candidates.pop("fastdl", None)
    if run is None:
        return case
    for name in backends:
        def on_backend(name=name):
            with fastdl.use_backend(name):
                return run()
        case.candidates[f"fastdl[{name}]"] = on_backend
    if case.measure is None and case.check is not None:
        check = case.check

        def check_each():
            for name in backends:  # outputs of every backend against the baselines
                case.candidates[f"fastdl[{name}]"]()
                check()
        case.check = check_each
    return case
