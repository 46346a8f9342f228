"""The command line: train's options, progress, --plot and one-line errors; --version, info."""
import csv
import sys

import numpy as np
import pytest

import fastdl
from fastdl.__main__ import main


def test_train_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "(default: 10)" in out and "(default: cifar10)" in out and "128 for lstm, 32 for the CNNs" in out


def test_missing_data_and_an_unbuilt_source_tree_are_one_line_errors(monkeypatch, capsys):
    from fastdl import datasets
    def offline(path=None):
        raise datasets.DatasetNotFoundError(
            "CIFAR-10", [("Keras cache", "not found (~/.keras)"),
                         ("download from https://x", "failed (URLError: offline)")], "put it in ~/.keras/datasets/.")

    monkeypatch.setattr(datasets.cifar10, "load_data", offline)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "could not load CIFAR-10 (download from https://x: failed (URLError: offline))" in err
    assert "--dataset fashion_mnist" in err

    monkeypatch.setitem(sys.modules, "fastdl._kernels.conv", None)  # as in a source tree never built
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "mnist"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "compiled kernels are not built" in err and "pip install -e ." in err


def test_version_and_info_name_the_cpu_features_the_kernels_use(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"fastdl {fastdl.__version__}"
    main(["info"])
    out = capsys.readouterr().out
    for needle in ("cpu:", "avx512f:", "avx2:", "loop clones:", "avx512 kernels:", "float32 gemm:", "openmp:"):
        assert needle in out


def test_cpu_features_agree_with_the_kernels_choices():
    from fastdl._kernels import conv, runtime

    features = runtime.cpu_features()
    assert features["float32 gemm"] == ("fastdl AVX-512 sgemm" if conv.winograd_available() else "BLAS (SciPy's)")
    if not features["avx512f"]:
        assert not features["avx512 kernels"] and features["loop clones"] != "avx512f"


def _small_data(monkeypatch, name="fashion_mnist"):
    """Train the CLI on 96 random 12x12 images instead of a real data set."""
    rng = np.random.default_rng(0)

    def load_data(path=None):
        return ((rng.integers(0, 256, (96, 12, 12), dtype=np.uint8), rng.integers(0, 3, 96)),
                (rng.integers(0, 256, (40, 12, 12), dtype=np.uint8), rng.integers(0, 3, 40)))

    monkeypatch.setattr(getattr(fastdl.datasets, name), "load_data", load_data)


def test_train_shows_progress_with_throughput_and_writes_the_curves(monkeypatch, capsys, tmp_path):
    _small_data(monkeypatch)
    png = tmp_path / "curves.png"
    main(["train", "--dataset", "fashion_mnist", "--epochs", "2", "--batch-size", "16", "--verbose", "1",
          "--seed", "1", "--plot", str(png)])
    out = capsys.readouterr().out
    assert "6/6 [" in out and "ETA:" in out and "samples/s" in out and "test accuracy:" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    with open(tmp_path / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    assert f"wrote {png}" in out


def test_plot_options_are_checked_before_training(monkeypatch, capsys, tmp_path):
    _small_data(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "fashion_mnist", "--epochs", "1", "--plot", str(tmp_path / "curves.jpg")])
    assert exit_info.value.code == 2 and "--plot takes a .png file name" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "fashion_mnist", "--epochs", "1", "--plot", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--plot needs matplotlib: pip install matplotlib" in err
    assert not (tmp_path / "c.csv").exists()


def test_train_builds_resnet20_for_the_images_and_saves_it(monkeypatch, capsys, tmp_path):
    _small_data(monkeypatch)
    main(["train", "--model", "resnet20", "--dataset", "fashion_mnist", "--epochs", "1", "--batch-size", "32",
          "--verbose", "0", "--seed", "2", "--no-augment", "--save", str(tmp_path / "r.keras")])
    assert "test accuracy:" in capsys.readouterr().out
    reference = fastdl.applications.resnet_v1((12, 12, 1), depth=20, classes=3)
    reference.build()
    assert fastdl.models.load_model(tmp_path / "r.keras").count_params() == reference.count_params()


def test_train_lstm_reads_the_images_row_by_row_and_saves_it(monkeypatch, capsys, tmp_path):
    _small_data(monkeypatch, "mnist")
    main(["train", "--model", "lstm", "--dataset", "mnist", "--epochs", "1", "--verbose", "0", "--seed", "3",
          "--save", str(tmp_path / "l.keras")])
    assert "test accuracy:" in capsys.readouterr().out
    model = fastdl.models.load_model(tmp_path / "l.keras")
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "LSTM", "Dense"]
    assert model.layers[0].input_shape == (12, 12)


@pytest.mark.real_data
def test_an_lstm_reading_mnist_row_by_row_reaches_97_percent_in_5_epochs(capsys):
    # the classic sequence task: 28 steps of 28 pixels, LSTM(128), Dense(10); about a minute
    loss, accuracy = main_results(["train", "--model", "lstm", "--dataset", "mnist", "--epochs", "5", "--seed", "0",
                                   "--verbose", "0"])
    assert accuracy >= 0.97, accuracy


@pytest.mark.real_data
def test_resnet20_learns_fashion_mnist(capsys):
    # a tenth of the full run's work (10,000 images, 2 epochs, about a minute here; the
    # full 60,000 x 10 epochs takes ~25 minutes on two cores, beyond CI's budget)
    loss, accuracy = main_results(["train", "--model", "resnet20", "--dataset", "fashion_mnist", "--limit", "10000",
                                   "--epochs", "2", "--no-augment", "--seed", "0", "--verbose", "0"])
    assert accuracy >= 0.75, accuracy


def main_results(argv):
    """train.run's (loss, accuracy) for these command-line arguments."""
    import argparse

    from fastdl import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return train.run(parser.parse_args(argv[1:]))
