"""The command line: `python -m fastdl train | bench | info`."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastdl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, threads, OpenMP, BLAS and backends")
    from fastdl import train
    from fastdl.benchmarks import cli as bench_cli

    train.add_arguments(commands.add_parser("train", help="train the reference CNN on a real data set"))

    bench_cli.add_arguments(commands.add_parser("bench", help="benchmark against PyTorch, Keras and NumPy"))
    args = parser.parse_args(argv)
    if args.command == "info":
        from fastdl import show_config

        show_config()
    elif args.command == "train":
        train.run(args)
    elif args.command == "bench":
        bench_cli.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
