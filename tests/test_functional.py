"""Issue #3: the functional API (Input, Model, Add/Concatenate/Multiply, several inputs and
outputs) computes the same graph on every backend and in the float64 reference, and its
architecture round-trips through JSON.

Tolerances as for single layers: forward rtol 1e-5 / atol 1e-6; one SGD(lr=1) step, so the
update is minus the gradient, within rtol 1e-4 / atol 1e-6 of the reference gradient.
"""

import json

import numpy as np
import pytest

import polyframe as pf
from polyframe.errors import ConfigError, DataError, ShapeError
from polyframe.reference import ReferenceModel

from conftest import check_reference_gradients

MSE = pf.MeanSquaredError()


def residual_two_input_two_output() -> pf.Model:
    """An image branch with a residual joint and a channel concat, a tabular branch joined by
    Concatenate and Multiply, and two heads (one image-shaped, one vector)."""
    image = pf.Input((6, 5, 2), name="image")
    table = pf.Input((4,), name="table")
    h = pf.Conv2D(3, 3, padding="same", activation="tanh")(image)
    skip = pf.Conv2D(3, 1)(image)
    h = pf.Add()([h, skip])
    h = pf.Concatenate()([h, image])                              # channels: 3 + 2
    pooled = pf.Flatten()(pf.MaxPool2D(2, padding="same")(h))     # channel-last flatten
    t = pf.Dense(6, activation="silu")(table)
    gate = pf.Dense(6, activation="sigmoid")(table)
    t = pf.Multiply()([t, gate])
    joined = pf.Concatenate(axis=1)([pooled, t])
    classes = pf.Dense(3, name="classes")(joined)
    heat = pf.Conv2D(1, 2, padding="same", name="heat")(h)        # image-shaped output
    return pf.Model([image, table], [classes, heat])


def _data(model: pf.Model, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(n, *shape)).astype(np.float32) for shape in model.input_shapes]
    ys = [rng.normal(size=(n, *shape)).astype(np.float32) for shape in model.output_shapes]
    return xs, ys


def test_graph_shapes_names_and_order():
    model = residual_two_input_two_output()
    assert [s.name for s in model.inputs] == ["image", "table"]
    assert model.outputs == ("classes", "heat")
    assert model.output_shapes == ((3,), (6, 5, 1))
    concat = next(n for n in model.nodes if n.name == "concatenate")
    assert concat.input_shape == ((6, 5, 3), (6, 5, 2)) and concat.output_shape == (6, 5, 5)
    seen = {"image", "table"}
    for node in model.nodes:                    # every node after the values it reads
        assert set(node.inputs) <= seen, node.name
        seen.update(node.output_keys)


def test_reference_gradients_of_graph_match_finite_differences():
    model = residual_two_input_two_output()
    ref = ReferenceModel(model, model.init_weights(1))
    xs, ys = _data(model, 3)
    xs = [x.astype(np.float64) for x in xs]
    # check_reference_gradients perturbs one input array; fold the graph into a one-input view
    # by checking the parameter gradients and each input's gradient in turn.
    value, grads, grad_x = ref.loss_and_grads(xs, ys, (MSE, MSE))
    rng = np.random.default_rng(0)
    eps = 1e-6
    for array, grad in [*((ref.weights[k], g) for k, g in grads.items()), *zip(xs, grad_x)]:
        flat = array.reshape(-1)
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            flat[i] += eps
            plus = ref.loss_and_grads(xs, ys, (MSE, MSE))[0]
            flat[i] -= 2 * eps
            minus = ref.loss_and_grads(xs, ys, (MSE, MSE))[0]
            flat[i] += eps
            assert grad.reshape(-1)[i] == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-9)
    assert value == pytest.approx(ref.loss_and_grads(xs, ys, (MSE, MSE))[0])


def test_sequential_is_a_graph_the_reference_differentiates():
    model = pf.Sequential([pf.Conv2D(2, 2), pf.Flatten(), pf.Dense(3)], input_shape=(4, 4, 1))
    ref = ReferenceModel(model, model.init_weights(0))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 4, 4, 1)), rng.normal(size=(2, 3))
    check_reference_gradients(ref, x, y, MSE, rng)


def test_graph_forward_and_gradients_match_reference_on_every_backend(backend):
    model = residual_two_input_two_output()
    weights = model.init_weights(2)
    xs, ys = _data(model, 5)
    ref = ReferenceModel(model, weights)
    expected = ref.forward(xs)
    trainer = pf.Trainer(model, backend=backend, loss=[MSE, MSE], loss_weights=[1.0, 0.5],
                         optimizer=pf.SGD(learning_rate=1.0), metrics=(), seed=2)
    got = trainer.predict({"table": xs[1], "image": xs[0]})
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    value, grads, _ = ref.loss_and_grads(xs, ys, (MSE, MSE), loss_weights=(1.0, 0.5))
    history = trainer.fit(xs, ys, epochs=1, batch_size=5, shuffle=False, progress=False)
    assert history.step_losses[0] == pytest.approx(value, rel=1e-5)
    after = trainer.get_weights()
    for key, grad in grads.items():
        np.testing.assert_allclose(weights[key] - after[key], grad, rtol=1e-4, atol=1e-6, err_msg=key)


def test_graph_metrics_are_reported_per_output(backend):
    image = pf.Input((4,), name="features")
    a = pf.Dense(3, name="first")(image)
    b = pf.Dense(2, name="second")(image)
    model = pf.Model(image, [a, b])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = [rng.integers(0, 3, 12), rng.integers(0, 2, 12)]
    trainer = pf.Trainer(model, backend=backend)
    result = trainer.evaluate(x, y)
    assert set(result) == {"loss", "first_accuracy", "second_accuracy"}
    first, second = trainer.predict(x)
    assert result["first_accuracy"] == pytest.approx(np.mean(first.argmax(1) == y[0]))
    assert result["second_accuracy"] == pytest.approx(np.mean(second.argmax(1) == y[1]))


def test_config_round_trip_is_exact_and_rebuilds_the_same_weights():
    model = residual_two_input_two_output()
    text = json.dumps(model.to_config())
    rebuilt = pf.Model.from_config(text)
    assert rebuilt.to_config() == model.to_config()
    assert [n.name for n in rebuilt.nodes] == [n.name for n in model.nodes]
    a, b = model.init_weights(7), rebuilt.init_weights(7)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    xs, _ = _data(model, 2)
    for left, right in zip(ReferenceModel(model, a).forward(xs), ReferenceModel(rebuilt, b).forward(xs)):
        np.testing.assert_array_equal(left, right)


def test_sequential_config_round_trip_keeps_every_layer_option():
    model = pf.Sequential([
        pf.Conv2D(4, (3, 2), strides=2, padding="same", activation="relu", name="stem"),
        pf.BatchNorm(momentum=0.9), pf.MaxPool2D(2, padding="same"), pf.Flatten(),
        pf.Dropout(0.25), pf.Dense(5, use_bias=False),
    ], input_shape=(9, 8, 1))
    config = json.loads(json.dumps(model.to_config()))
    rebuilt = pf.Sequential.from_config(config)
    assert isinstance(rebuilt, pf.Sequential) and rebuilt.layers == model.layers
    assert rebuilt.to_config() == model.to_config()


@pytest.mark.parametrize("build, error, words", [
    (lambda: pf.Add()([pf.Input((4,)), pf.Input((5,))]), ShapeError, "one shape"),
    (lambda: pf.Concatenate()([pf.Input((4, 3)), pf.Input((5, 3))]), ShapeError, "other axes must match"),
    (lambda: pf.Concatenate(axis=3)([pf.Input((4,)), pf.Input((4,))]), ShapeError, "out of range"),
    (lambda: pf.Concatenate(axis=0), ConfigError, "batch axis"),
    (lambda: pf.Add()(pf.Input((4,))), ConfigError, "2 to"),
    (lambda: pf.Dense(3)(pf.Input((4, 4, 1))), ShapeError, "Flatten"),
    (lambda: pf.Dense(3)(np.zeros((2, 4))), ConfigError, "called on ndarray"),
    (lambda: pf.Model(pf.Input((3,)), pf.Dense(2)(pf.Input((3,)))), ConfigError, "not in the model's inputs"),
    (lambda: pf.Input((0, 3)), ConfigError, "Input shape"),
    (lambda: pf.Input((3,), dtype="float16"), ConfigError, "dtype"),
])
def test_bad_graphs_fail_before_any_framework_runs(build, error, words):
    with pytest.raises(error, match=words):
        build()


def test_a_layer_called_twice_is_refused_rather_than_silently_unshared():
    dense = pf.Dense(2)
    x = pf.Input((3,))
    with pytest.raises(ConfigError, match="called twice"):
        pf.Model(x, pf.Add()([dense(x), dense(x)]))


def test_bad_configs_are_refused_with_the_reason():
    config = residual_two_input_two_output().to_config()
    with pytest.raises(ConfigError, match="not a polyframe model config"):
        pf.Model.from_config({"layers": []})
    with pytest.raises(ConfigError, match="not valid JSON"):
        pf.Model.from_config("{nope")
    broken = json.loads(json.dumps(config))
    broken["layers"][0]["class"] = "Teleport"
    with pytest.raises(ConfigError, match="unknown layer class 'Teleport'"):
        pf.Model.from_config(broken)
    broken = json.loads(json.dumps(config))
    broken["layers"][0]["config"]["colour"] = "red"
    with pytest.raises(ConfigError, match="no option"):
        pf.Model.from_config(broken)


def test_multi_input_data_errors_name_the_inputs():
    model = residual_two_input_two_output()
    trainer_inputs = _data(model, 4)[0]
    trainer = pf.Trainer(model, backend=pf.default_backend_name(), loss=MSE, metrics=())
    with pytest.raises(DataError, match=r"2 inputs \['image', 'table'\]"):
        trainer.predict(trainer_inputs[0])
    with pytest.raises(DataError, match="missing \\['table'\\]"):
        trainer.predict({"image": trainer_inputs[0]})
    with pytest.raises(DataError, match="different sample counts"):
        trainer.predict([trainer_inputs[0], trainer_inputs[1][:3]])


def recurrent_states_model() -> pf.Model:
    """LSTM and GRU with return_state: the sequence feeds a GRU, the final states a head."""
    tokens = pf.Input((5, 3), name="sequence")
    seq, h, c = pf.LSTM(4, return_sequences=True, return_state=True)(tokens)
    last, g = pf.GRU(3, return_state=True)(seq)
    head = pf.Dense(2, name="head")(pf.Concatenate()([h, c, g]))
    return pf.Model(tokens, [head, last])


def test_return_state_shapes_and_sequential_refusal():
    model = recurrent_states_model()
    lstm = model.nodes[0]
    assert lstm.output_keys == ("lstm", "lstm:1", "lstm:2")
    assert lstm.output_shape == ((5, 4), (4,), (4,))
    with pytest.raises(ConfigError, match="functional API"):
        pf.Sequential([pf.LSTM(3, return_state=True)], input_shape=(4, 2))


def test_return_state_reference_gradients_match_finite_differences():
    model = recurrent_states_model()
    ref = ReferenceModel(model, model.init_weights(3))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 3))
    ys = [rng.normal(size=(2, 2)), rng.normal(size=(2, 3))]
    _, grads, grad_x = ref.loss_and_grads(x, ys, (MSE, MSE))
    eps = 1e-6
    for array, grad in [*((ref.weights[k], g) for k, g in grads.items()), (x, grad_x)]:
        flat = array.reshape(-1)
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            flat[i] += eps
            plus = ref.loss_and_grads(x, ys, (MSE, MSE))[0]
            flat[i] -= 2 * eps
            minus = ref.loss_and_grads(x, ys, (MSE, MSE))[0]
            flat[i] += eps
            assert grad.reshape(-1)[i] == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-9)


def test_return_state_matches_reference_on_every_backend(backend):
    model = recurrent_states_model()
    weights = model.init_weights(4)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 5, 3)).astype(np.float32)
    ys = [rng.normal(size=(6, 2)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)]
    ref = ReferenceModel(model, weights)
    trainer = pf.Trainer(model, backend=backend, loss=MSE, optimizer=pf.SGD(learning_rate=1.0),
                         metrics=(), seed=4)
    for got, expected in zip(trainer.predict(x), ref.forward(x)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    _, grads, _ = ref.loss_and_grads(x, ys, (MSE, MSE))
    trainer.fit(x, ys, batch_size=6, shuffle=False, progress=False)
    after = trainer.get_weights()
    for key, grad in grads.items():
        np.testing.assert_allclose(weights[key] - after[key], grad, rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("build, words", [
    (lambda: pf.Dense(10, activaton="relu"), "unexpected keyword argument 'activaton'.*units, activation"),
    (lambda: pf.Dense(3, activation="swishy"), "unknown activation 'swishy'"),
    (lambda: pf.Conv2D(filters=4), "missing a required argument: 'kernel_size'"),
    (lambda: pf.Adam(lr=0.1), "unexpected keyword argument 'lr'.*learning_rate"),
    (lambda: pf.MeanSquaredError(reduction="sum"), "unexpected keyword argument 'reduction'"),
])
def test_unknown_options_are_polyframe_errors_that_list_the_valid_ones(build, words):
    with pytest.raises(ConfigError, match=words):
        build()


def _dense_named_like_a_state_output():
    i = pf.Input((5, 3))
    sequence, h, c = pf.LSTM(4, return_state=True, name="l")(i)
    return pf.Model(i, [pf.Dense(4, name="l:1")(sequence), h, c])


@pytest.mark.parametrize("build, words", [
    (_dense_named_like_a_state_output, "got 'l:1'"),
    (lambda: pf.Sequential([pf.Dense(2, name={})], input_shape=(3,)), "got {}"),
    (lambda: pf.Sequential([pf.Dense(2, name=5)], input_shape=(3,)), "got 5"),
    (lambda: pf.Input((3,), name=""), "Input name"),
    (lambda: pf.Sequential([pf.Dense(3), pf.Add()], input_shape=(4,)), "functional API"),
    (lambda: (lambda d: pf.Sequential([d, d], input_shape=(3,)))(pf.Dense(3)), "appears twice"),
    (lambda: (lambda i: (lambda o: pf.Model(i, [o, o]))(pf.Dense(2)(i)))(pf.Input((3,))), "listed twice"),
    (lambda: (lambda i: pf.Model([i, pf.Input((2,))], pf.Dense(2)(i)))(pf.Input((3,))), "feed no output"),
    (lambda: pf.Trainer(pf.Sequential([pf.Embedding(2**40, 4)], input_shape=(3,)), backend="jax"),
     "more than this machine can allocate"),
])
def test_graphs_that_would_compute_something_else_are_refused(build, words):
    with pytest.raises(ConfigError, match=words):
        build()


def _config_with(edit):
    config = json.loads(json.dumps(residual_two_input_two_output().to_config()))
    edit(config)
    return config


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["inputs"][0].update(shape=4), "list of ints"),
    (lambda c: c["inputs"][0].update(shape=None), "list of ints"),
    (lambda c: c["layers"][0].update(inputs=[["image"]]), "list of names"),
    (lambda c: c["layers"][0].update(node=["x"]), "'node' name"),
    (lambda c: c.update(outputs=[["classes"]]), "list of names"),
    (lambda c: c["layers"][0].update({"class": "..:x"}), "is not loaded"),
    (lambda c: c["layers"][0].update({"class": "this:x"}), "never import modules"),
    (lambda c: c["layers"][0]["config"].update(filters=[1, 2]), "must be an integer"),
])
def test_malformed_configs_are_config_errors(edit, words):
    with pytest.raises(ConfigError, match=words):
        pf.Model.from_config(_config_with(edit))


def test_deeply_nested_config_text_is_refused_cleanly():
    with pytest.raises(ConfigError, match="nested too deeply"):
        pf.Model.from_config("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("ids", [10, -1, 2.5])
def test_token_ids_outside_the_embedding_are_refused_on_every_backend(backend, ids):
    tokens = pf.Input((5,), dtype="float32")
    model = pf.Model(tokens, pf.Dense(2)(pf.Flatten()(pf.Embedding(10, 4)(tokens))))
    trainer = pf.Trainer(model, backend=backend, loss=MSE, metrics=())
    bad = np.full((3, 5), ids, dtype=np.float32)
    with pytest.raises(DataError, match=r"ids in \[0, 10\)"):
        trainer.predict(bad)
    with pytest.raises(DataError, match=r"ids in \[0, 10\)"):
        trainer.fit(bad, np.zeros((3, 2), np.float32), progress=False)
    assert trainer.predict(np.full((3, 5), 9.0, np.float32)).shape == (3, 2)
