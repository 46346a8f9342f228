"""The command line: `python -m fastdl train | bench | info`."""
import argparse
import os
import sys


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every option's default."""


def _not_built(exc):
    """The one-line message for running a source tree whose kernels are not compiled."""
    source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (f"fastdl's compiled kernels are not built in {source} ({exc}). Python found this source "
            f"tree before the installed package: run from another directory, or build in place with "
            f"`pip install -e .` (or `python setup.py build_ext --inplace`).")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastdl", description=__doc__, formatter_class=_Help)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, threads, OpenMP, BLAS and backends")
    from fastdl import train
    from fastdl.benchmarks import cli as bench_cli

    train.add_arguments(commands.add_parser("train", help="train the reference CNN on a real data set",
                                            formatter_class=_Help))
    bench_cli.add_arguments(commands.add_parser("bench", help="benchmark against PyTorch, Keras and NumPy",
                                                formatter_class=_Help))
    args = parser.parse_args(argv)
    try:
        if args.command in ("train", "bench"):
            import fastdl._kernels.conv  # noqa: F401  (fail here, not at the first step)
        if args.command == "info":
            from fastdl import show_config

            show_config()
        elif args.command == "train":
            train.run(args)
        elif args.command == "bench":
            bench_cli.run(args)
    except ImportError as exc:
        if "fastdl._kernels" not in str(exc):
            raise
        parser.exit(2, f"error: {_not_built(exc)}\n")
    except train.CommandLineError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
