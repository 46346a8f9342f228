"""The command line: `fastdl train | bench | export | info` (or `python -m fastdl ...`)."""
import argparse
import os
import sys


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every option's default."""


def _not_built(exc):
    """The one-line message for running a source tree whose kernels are not compiled."""
    source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (f"fastdl's compiled kernels are not built in {source} ({exc}). Python found this source "
            f"tree before the installed package (whose kernels it uses only when they were built from these "
            f"sources): run from another directory, or build in place with `pip install -e .` (or "
            f"`python setup.py build_ext --inplace`).")


def _export(args):
    import numpy as np

    from fastdl import onnx
    from fastdl.models import load_model

    model = load_model(args.model, compile=False)
    onnx.export(model, args.output, opset=args.opset)
    print(f"wrote {args.output} (opset {args.opset}, input (batch, {', '.join(map(str, model.input_shape))}))")
    if args.check:
        import onnxruntime

        rng, embedding = np.random.default_rng(0), onnx.token_embedding(model)
        x = (rng.random((8,) + model.input_shape).astype(np.float32) if embedding is None
             else rng.integers(0, embedding.input_dim, (8,) + model.input_shape))
        session = onnxruntime.InferenceSession(args.output, providers=["CPUExecutionProvider"])
        difference = float(np.abs(session.run(None, {"input": x})[0] - model.predict(x)).max())
        print(f"ONNX Runtime {onnxruntime.__version__}: largest difference from predict {difference:.2e}")
        if not difference <= 1e-4:
            raise SystemExit(f"error: the ONNX graph's outputs differ from predict's by {difference:.2e}")


def main(argv=None):
    import fastdl

    prog = "fastdl" if os.path.basename(sys.argv[0]) == "fastdl" else "python -m fastdl"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"fastdl {fastdl.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, the CPU features the kernels use, threads, OpenMP, BLAS "
                                     "and backends")
    from fastdl import train
    from fastdl.benchmarks import cli as bench_cli

    train.add_arguments(commands.add_parser("train", help="train the reference CNN on a real data set",
                                            formatter_class=_Help))
    bench_cli.add_arguments(commands.add_parser("bench", help="benchmark against PyTorch, Keras and NumPy",
                                                formatter_class=_Help))
    export = commands.add_parser("export", help="write a saved model (.keras or .h5) as ONNX",
                                 formatter_class=_Help)
    export.add_argument("model", help="the model file: .keras (fastdl's or Keras 3's) or a legacy .h5")
    export.add_argument("output", help="the ONNX file to write")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or later)")
    export.add_argument("--check", action="store_true",
                        help="run the graph in ONNX Runtime on random input and compare with predict")
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
        elif args.command == "export":
            _export(args)
    except ImportError as exc:
        if "fastdl._kernels" not in str(exc):
            raise
        parser.exit(2, f"error: {_not_built(exc)}\n")
    except train.CommandLineError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
