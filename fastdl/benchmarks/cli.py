"""`python -m fastdl bench`: run suites, print tables, write results.json and plots."""
import importlib
import os
import time

import numpy as np

import fastdl
from fastdl.benchmarks import baselines, harness, report

SUITES = ("kernels", "optim", "train", "augment", "recurrent")


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats (< 2 minutes)")
    parser.add_argument("--suite", default="all", choices=SUITES + ("all",))
    parser.add_argument("--threads", type=int, default=None, help="threads for every library (default: all cores)")
    parser.add_argument("--baselines", default="torch,keras,numpy,jax",
                        help="comma-separated: torch, keras, numpy, jax, onnxruntime, openvino (JAX "
                             "runs fastdl's graph in jit-compiled lax ops; the engines run fastdl's "
                             "model exported to ONNX)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 32,128)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per case")
    parser.add_argument("--out", default="bench-results", help="directory for results.json and plots")
    parser.add_argument("--backends", default=None,
                        help="fastdl backends to time side by side, e.g. cython,numba,auto "
                             "(default: the active one)")


def measure_peaks(threads):
    """This machine's sgemm GFLOP/s (NumPy's BLAS, 1024^3) and copy GB/s (64M float32)."""
    a = np.ones((1024, 1024), np.float32)
    gemm = min(_time(lambda: a @ a) for _ in range(5))
    src = np.ones(1 << 26, np.float32)
    dst = np.empty_like(src)
    copy = min(_time(lambda: np.copyto(dst, src)) for _ in range(3))
    return {"gflops": 2 * 1024 ** 3 / gemm / 1e9, "gbps": 2 * src.nbytes / copy / 1e9}


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def available_suites():
    """Suites whose module exists (suites arrive with the features they measure)."""
    found = []
    for name in SUITES:
        try:
            importlib.import_module(f"fastdl.benchmarks.suites.{name}")
            found.append(name)
        except ModuleNotFoundError:
            pass
    return found


def run(args):
    threads = args.threads or fastdl.get_num_threads()
    fastdl.set_num_threads(threads)
    requested = [b.strip() for b in args.baselines.split(",") if b.strip()]
    libs, skipped = baselines.resolve(requested, threads)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([32] if args.quick else [32, 128])
    repeats = args.repeats or (7 if args.quick else 21)
    fastdl_backends = [b.strip() for b in args.backends.split(",")] if args.backends else None
    present = available_suites()
    chosen = present if args.suite == "all" else [args.suite]
    for name in chosen:
        if name not in present:
            raise SystemExit(f"suite {name!r} is not available in this version of fastdl")
    os.makedirs(args.out, exist_ok=True)

    from fastdl._info import config_info, cpu_model

    environment = {"fastdl_config": config_info(), "cpu": cpu_model(), "threads": threads,
                   "baselines": baselines.versions(libs), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "peaks": measure_peaks(threads), "batches": batches, "repeats": repeats}
    for name, why in skipped.items():
        print(f"baseline {name}: skipped, {why}")
    print(f"cpu: {environment['cpu']}; threads: {threads}; "
          f"peaks: {environment['peaks']['gflops']:.0f} GFLOP/s sgemm, {environment['peaks']['gbps']:.1f} GB/s copy")
    all_rows = []
    for name in chosen:
        suite = importlib.import_module(f"fastdl.benchmarks.suites.{name}")
        suite_rows = []
        for case in suite.cases(args.quick, batches, libs):
            if fastdl_backends:
                harness.split_by_backend(case, fastdl_backends)
            baselines.set_threads(libs, threads)  # a case's setup may change it
            try:
                timings = harness.run_case(case, repeats=repeats)
            except Exception as exc:  # one broken case is reported, the run goes on
                print(f"{case.suite}: {case.name} [{case.shape}] failed: {type(exc).__name__}: {exc}")
                continue
            suite_rows.extend(report.rows(case, timings))
        all_rows.extend(suite_rows)
        print()
        print(report.table(name, suite_rows))
    report.write_json(os.path.join(args.out, "results.json"), environment, all_rows, skipped)
    written = report.plots(args.out, all_rows, environment["peaks"])
    print()
    print(f"wrote {os.path.join(args.out, 'results.json')}" +
          (f", {', '.join(written)}" if isinstance(written, list) else f"; {written}"))
    return all_rows
