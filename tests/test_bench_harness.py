"""The benchmark harness: rounds, warm-up, and the settling of short calls."""
import time

from fastdl.benchmarks import harness
from fastdl.benchmarks.harness import Case, run_case


def test_short_calls_are_settled_and_long_ones_timed_as_they_come(monkeypatch):
    monkeypatch.setattr(harness, "SETTLE", 0.001)
    calls = {"short": 0, "long": 0}

    def short():
        calls["short"] += 1

    def long():
        calls["long"] += 1
        time.sleep(harness.SETTLE_BELOW * 1.2)

    timings = run_case(Case("t", "case", "shape", {"short": short, "long": long}), repeats=4, warmup=1)
    assert {name: t.samples for name, t in timings.items()} == {"short": 4, "long": 4}
    # one warm-up, four timed calls, and SETTLE_CALLS untimed ones before every timed
    # call after the first; the long candidate is never settled
    assert calls["short"] == 1 + 4 + 3 * harness.SETTLE_CALLS
    assert calls["long"] == 1 + 4
    assert timings["long"].minimum >= harness.SETTLE_BELOW
    assert timings["short"].maximum < harness.SETTLE_BELOW



def test_the_jax_baseline_computes_fastdls_network_and_its_check_can_fail():
    import numpy as np
    import pytest

    jax = pytest.importorskip("jax")
    from fastdl.benchmarks.jax_models import JaxModel
    from fastdl.benchmarks.suites import resnet, train

    rng = np.random.default_rng(3)
    x = rng.random((4, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    model = resnet.fastdl_resnet()
    np.testing.assert_allclose(JaxModel(jax, model).predict(x), model.predict_on_batch(x), atol=1e-5)
    train.same_losses(model, JaxModel(jax, model), x, y)()  # BatchNorm's training mode too
    model = train.fastdl_model()
    jmodel = JaxModel(jax, model)
    model.layers[0].params[0][...] *= 1.5  # after JAX took its copy
    with pytest.raises(AssertionError, match="not fastdl's"):
        train.same_losses(model, jmodel, x, y)()
