"""capture: hooked calls see the inputs, stages share inputs, forward passes stop early."""

from __future__ import annotations

import keras
import numpy as np

from mobileprune.oneshot.calibration import Calibration
from mobileprune.oneshot.capture import Stage, call_order, run_stage, stages
from tests.oneshot._models import mixed, mlp


def test_order_and_shared_input_stages():
    model = mixed()
    calibration = Calibration(model, np.random.rand(4, 10, 16).astype("float32"))
    mha = model.get_layer("mha")
    layers = [
        model.get_layer("logits"),
        mha.value_dense,
        mha.query_dense,
        mha.key_dense,
        model.get_layer("d1"),
        mha.output_dense,
    ]
    order = call_order(model, calibration, layers)
    assert [layer.name for layer, _, _ in order] == ["d1", "query", "key", "value", "attention_output", "logits"]
    assert [[layer.name for layer in s.layers] for s in stages(order)] == [
        ["d1"],
        ["query", "key", "value"],
        ["attention_output"],
        ["logits"],
    ]
    assert all("call" not in layer.__dict__ for layer in layers)  # hooks removed


def test_stage_sees_the_layer_input_and_stops_early():
    model = mlp()
    x = np.random.default_rng(0).standard_normal((10, 16)).astype("float32")
    calibration = Calibration(model, x, batch_size=4)
    layers = [model.get_layer(n) for n in ("hidden", "middle", "logits")]
    first, second, last = stages(call_order(model, calibration, layers))
    seen, called = [], []
    logits = model.get_layer("logits")
    original = logits.call
    logits.call = lambda *a, **k: called.append(1) or original(*a, **k)
    try:
        run_stage(model, calibration, second, lambda layer, inp: seen.append(keras.ops.convert_to_numpy(inp)))
        assert called == []  # stopped at the next stage's layer
        hidden = model.get_layer("hidden")
        np.testing.assert_allclose(np.concatenate(seen), keras.ops.convert_to_numpy(hidden(x)), rtol=1e-5, atol=1e-6)
        run_stage(model, calibration, last, lambda layer, inp: None)
        assert len(called) == 3  # the last stage runs to the end, once per batch
    finally:
        del logits.call


def test_forward_frees_each_activation_after_its_last_use():
    import weakref

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    a = keras.layers.Dense(8, name="a")(inputs)
    b = keras.layers.Dense(8, name="b")(a)
    c = keras.layers.Dense(8, name="c")(b)
    outputs = keras.layers.Dense(2, name="d")(c)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    refs, alive, seen = {}, {}, []

    def consume(layer, inp):
        refs[layer.name] = weakref.ref(inp)  # the output of the layer before
        if layer.name == "d":
            alive.update({name: ref() is not None for name, ref in refs.items()})
            seen.append(keras.ops.convert_to_numpy(inp))

    run_stage(model, Calibration(model, x), Stage([model.get_layer(n) for n in "bcd"]), consume)
    # While `d` runs, the outputs of `a` and `b` (read only by `b` and `c`) are gone; `c`'s is d's input.
    assert alive == {"b": False, "c": False, "d": True}
    expected = x
    for name in "abc":
        expected = keras.ops.convert_to_numpy(model.get_layer(name)(expected))
    np.testing.assert_allclose(seen[0], expected, rtol=1e-5, atol=1e-6)


def test_an_early_stop_leaves_no_reference_cycle_holding_the_callers():
    """After a stage that stops the forward pass early, the caller's locals (a Hessian) are freed at once."""
    import gc
    import weakref

    from mobileprune.oneshot.calibration import Calibration
    from mobileprune.oneshot.capture import call_order, run_stage, stages

    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, name="first")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="second")(hidden))
    calibration = Calibration(model, np.ones((4, 8), "float32"), batch_size=4)
    first, _ = stages(call_order(model, calibration, [model.get_layer("first"), model.get_layer("second")]))
    assert first.stop is model.get_layer("second")

    class Hessian:
        pass

    def stage() -> weakref.ref:
        hessian = Hessian()
        run_stage(model, calibration, first, lambda layer, x: None)
        return weakref.ref(hessian)

    gc.collect()
    gc.disable()
    try:
        assert stage()() is None
    finally:
        gc.enable()
