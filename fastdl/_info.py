"""show_config(): what this fastdl runs on, for bug reports and benchmark records."""
import platform
import sys


def config_info():
    """A dict of versions, threads, OpenMP, BLAS libraries and the backends that load."""
    import numpy as np

    import fastdl
    from fastdl import _config

    info = {
        "fastdl": fastdl.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "backend": _config.get_backend(),
        "threads": _config.get_num_threads(),
        "backends": {},
    }
    for name in _config.BACKENDS:
        try:
            _config.backend_module(name)
            info["backends"][name] = "available"
        except Exception as exc:  # report why, never fail show_config
            info["backends"][name] = f"unavailable: {type(exc).__name__}: {exc}"
    if "auto" in info["backends"] and info["backends"]["auto"] == "available":
        from fastdl.backends import auto

        info["auto"] = {"candidates": auto.candidates(), "choices cached": len(auto.choices()),
                        "numba measured": auto.numba_ready() or "after fastdl.backends.numba_cpu.warmup()",
                        "cache file": auto.cache_path(),
                        "see / override": "fastdl.backends.auto.choices() / .prefer(op, backend)"}
    try:
        from fastdl._kernels import runtime

        info["cpu"] = {"model": cpu_model(), **runtime.cpu_features()}
        info["openmp"] = {"version": runtime.openmp_version(),
                          "max_threads": runtime.openmp_max_threads()}
    except ImportError as exc:
        info["openmp"] = f"unavailable: {exc}"
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info


def cpu_model():
    """The CPU's model name, as /proc/cpuinfo (or the platform module) gives it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def show_config(file=None):
    """Print config_info() as indented lines."""
    info = config_info()
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            lines.append(f"{key}:")
            for item in value:
                lines.append("  - " + ", ".join(f"{k}={v}" for k, v in item.items()))
        else:
            lines.append(f"{key}: {value}")
    print("\n".join(lines), file=file or sys.stdout)
