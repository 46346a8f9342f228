"""Helpers for pytest-benchmark over the same cases as `python -m fastdl bench`.

`pytest bench` gives calibrated timings per candidate, grouped by case; CI runs
`pytest bench --benchmark-disable`, which calls each candidate once and checks that
fastdl still agrees with the baselines. No test asserts a timing.
"""
import fastdl
from fastdl.benchmarks import baselines

THREADS = fastdl.get_num_threads()
LIBS, SKIPPED = baselines.resolve(["torch", "keras", "numpy", "jax", "onnxruntime", "openvino"], THREADS)


def params(cases):
    """(case, candidate) pairs with readable ids, for parametrize."""
    pairs, ids = [], []
    for case in cases:
        for label in case.candidates:
            pairs.append((case, label))
            ids.append(f"{case.name} [{case.shape}] {label}".replace(" ", "_"))
    return dict(argvalues=pairs, ids=ids)


def run(benchmark, case, label):
    """Check the case's outputs agree, then time one candidate."""
    for fn in case.candidates.values():
        fn()
    if case.check is not None:
        case.check()
    benchmark.group = f"{case.name} [{case.shape}]"
    benchmark.extra_info.update(unit=case.unit, work=case.work, threads=THREADS)
    benchmark(case.candidates[label])
