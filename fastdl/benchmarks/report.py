"""Tables, results.json and plots of a benchmark run."""
import json
import os


def rows(case, timings):
    """One row per (fastdl variant, baseline) of a case: times in ms, ratio
    fastdl/baseline, achieved throughput. Variants are 'fastdl' or 'fastdl[backend]';
    with several variants each is also compared with the others' baselines."""
    variants = [label for label in timings if label.startswith("fastdl")] or [None]
    others = [label for label in timings if not label.startswith("fastdl")]
    out = []
    for variant in variants:
        out.extend(_rows_for(case, timings, variant, others or [variant]))
    return out


def _rows_for(case, timings, variant, others):
    mine = timings.get(variant) if variant else None
    out = []
    for label in others:
        t = timings[label]
        out.append({
            "suite": case.suite, "op": case.name, "shape": case.shape,
            "fastdl": variant,
            "baseline": None if label == variant else label,
            "fastdl_ms": None if mine is None else mine.median * 1e3,
            "fastdl_min_ms": None if mine is None else mine.minimum * 1e3,
            "fastdl_max_ms": None if mine is None else mine.maximum * 1e3,
            "baseline_ms": None if label == variant else t.median * 1e3,
            "baseline_min_ms": None if label == variant else t.minimum * 1e3,
            "baseline_max_ms": None if label == variant else t.maximum * 1e3,
            "ratio": None if mine is None or label == variant else mine.median / t.median,
            "unit": case.unit,
            "fastdl_throughput": _throughput(case, mine),
            "baseline_throughput": None if label == variant else _throughput(case, t),
            "samples": t.samples,
            "notes": {k: v for k, v in case.notes.items() if k in ("fastdl", variant, label)},
        })
    return out


# work per second is shown in the case's unit: giga for FLOP and bytes, kilo for counts
UNIT_SCALE = {"GFLOP/s": 1e9, "GB/s": 1e9, "k img/s": 1e3, "k batch/s": 1e3}


def _throughput(case, timing):
    if timing is None or not case.work:
        return None
    return case.work / timing.median / UNIT_SCALE[case.unit]


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def table(suite, suite_rows):
    """A plain-text table of one suite."""
    header = ("op", "shape", "fastdl", "baseline", "fastdl ms", "base ms", "ratio", "fastdl", "base")
    lines = [[r["op"], r["shape"], r["fastdl"] or "-", r["baseline"] or "-", _fmt(r["fastdl_ms"], ".3f"),
              _fmt(r["baseline_ms"], ".3f"), _fmt(r["ratio"], ".2f"),
              _fmt(r["fastdl_throughput"], ".1f") + (" " + r["unit"] if r["fastdl_throughput"] else ""),
              _fmt(r["baseline_throughput"], ".1f")] for r in suite_rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([f"## {suite}", fmt.format(*header), rule] + [fmt.format(*map(str, line)) for line in lines])


def write_json(path, environment, all_rows, skipped):
    with open(path, "w") as f:
        json.dump({"environment": environment, "skipped_baselines": skipped, "rows": all_rows}, f, indent=2)


def plots(out_dir, all_rows, peaks):
    """ratios.png (bars of fastdl/baseline per op) and roofline.png (achieved GFLOP/s and
    GB/s per case, beside this machine's measured peaks). Needs matplotlib; returns the
    files written, or the reason none were."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install 'fastdl[bench]'): no plots"
    written = []
    ratio_rows = [r for r in all_rows if r["ratio"] is not None]
    if ratio_rows:
        fig, ax = plt.subplots(figsize=(10, max(3, 0.28 * len(ratio_rows))))
        labels = [f"{r['op']} [{r['shape']}] {r['fastdl']} vs {r['baseline']}" for r in ratio_rows]
        values = [r["ratio"] for r in ratio_rows]
        ax.barh(range(len(values)), values, color=["tab:green" if v <= 1 else "tab:red" for v in values])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("time ratio fastdl / baseline (lower is better)")
        fig.tight_layout()
        path = os.path.join(out_dir, "ratios.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, unit, peak in ((axes[0], "GFLOP/s", peaks.get("gflops")), (axes[1], "GB/s", peaks.get("gbps"))):
        chosen = [r for r in all_rows if r["unit"] == unit and r["baseline"] in ("torch", None)]
        seen = set()
        for i, r in enumerate(chosen):
            if r["op"] + r["shape"] in seen:
                continue
            seen.add(r["op"] + r["shape"])
            if r["fastdl_throughput"]:
                ax.scatter(i, r["fastdl_throughput"], color="tab:blue", label="fastdl" if i == 0 else None)
            if r["baseline_throughput"]:
                ax.scatter(i, r["baseline_throughput"], color="tab:orange", marker="x",
                           label="torch" if i == 0 else None)
        if peak:
            ax.axhline(peak, color="gray", linestyle="--", label=f"measured peak {peak:.0f}")
        ax.set_ylabel(f"achieved {unit}")
        ax.set_xlabel("case")
        ax.set_title(unit)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out_dir, "roofline.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
