"""The reference program (section 4 of the seed) runs on fastdl with only its imports
changed, and the seed CNN learns a real data set."""
import os
import runpy
import warnings

import numpy as np
import pytest

from fastdl import datasets, train

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "seed_cifar10.py")


def test_seed_program_runs_with_only_its_imports_changed(monkeypatch, capsys):
    rng = np.random.default_rng(0)

    def small_cifar(path=None):  # a small slice of CIFAR-shaped data
        def split(n):
            return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, (n, 1)).astype(np.uint8)
        return split(256), split(64)

    monkeypatch.setattr(datasets.cifar10, "load_data", small_cifar)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runpy.run_path(EXAMPLE, run_name="__main__")
    assert any("use `learning_rate`" in str(w.message) for w in caught)  # Adam(lr=...) is legacy
    out = capsys.readouterr().out
    assert "Epoch 10/10" in out
    accuracy = float(out.strip().splitlines()[-1].split("Accuracy:")[1])
    assert 0 <= accuracy <= 100


@pytest.mark.real_data
def test_seed_cnn_learns_fashion_mnist():
    try:
        (x_train, y_train), (x_test, y_test) = train.load("fashion_mnist", limit=12000)
    except datasets.DatasetNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    import fastdl

    fastdl.utils.set_random_seed(0)
    model = train.seed_cnn(x_train.shape[1:])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0)
    loss, accuracy = model.evaluate(x_test[:3000], y_test[:3000], verbose=0)
    assert accuracy > 0.78, (loss, accuracy)  # chance is 0.10
