"""Issue #3: LSTM and GRU compute the canonical recurrences on every backend.

Forward outputs against the float64 reference at rtol 1e-5 / atol 1e-6 and one SGD(lr=1) step (so
the update is the gradient) at atol 1e-6, with perturbed weights so that every bias is non-zero;
the reference's BPTT against central finite differences; the initial weights (orthogonal recurrent
kernels, LSTM forget bias 1) and their bitwise round trip; and the gate layout against values
computed by hand, scalar by scalar, from the documented formulas.
"""

import itertools
import math

import numpy as np
import pytest

import polyframe as pf
from polyframe.reference import ReferenceModel

from conftest import check_reference_gradients, mse_trainer, regression_data

MODELS = {
    "lstm": pf.Sequential([pf.LSTM(5), pf.Dense(3)], input_shape=(6, 4)),
    "lstm-sequences": pf.Sequential([pf.LSTM(4, return_sequences=True), pf.Flatten(), pf.Dense(3)],
                                    input_shape=(5, 3)),
    "gru": pf.Sequential([pf.GRU(5), pf.Dense(3)], input_shape=(6, 4)),
    "gru-sequences": pf.Sequential([pf.GRU(4, return_sequences=True), pf.Flatten(), pf.Dense(3)],
                                   input_shape=(5, 3)),
    "stacked": pf.Sequential([                                          # sequence output, rank 3
        pf.Conv1D(4, 2, activation="tanh"),
        pf.LSTM(4, return_sequences=True),
        pf.Conv1D(3, 2),
        pf.GRU(3, return_sequences=True),
    ], input_shape=(7, 2)),
}

MSE = pf.MeanSquaredError()


def _perturbed(model, seed):
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0, 0.3, v.shape)).astype(np.float32)
            for k, v in model.init_weights(seed).items()}


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_and_one_sgd_step_match_the_reference(backend, name):
    model = MODELS[name]
    x, y = regression_data(model, 4)
    start = _perturbed(model, 3)
    ref = ReferenceModel(model, start)
    trainer = mse_trainer(model, backend, optimizer=pf.SGD(learning_rate=1.0))
    trainer.set_weights(start)
    np.testing.assert_allclose(trainer.predict(x), ref.forward(x), rtol=1e-5, atol=1e-6)

    ref_loss, grads, _ = ref.loss_and_grads(x, y, MSE)
    history = trainer.fit(x, y, batch_size=len(x), shuffle=False, progress=False)
    assert history.step_losses[0] == pytest.approx(ref_loss, rel=1e-5)
    after = trainer.get_weights()
    assert list(after) == list(start)
    for key, value in after.items():
        np.testing.assert_allclose(value, start[key] - grads[key], rtol=0, atol=1e-6, err_msg=key)
    stepped = ReferenceModel(model, {k: start[k] - grads[k] for k in start})
    np.testing.assert_allclose(trainer.predict(x), stepped.forward(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_gradients_match_finite_differences(name):
    model = MODELS[name]
    rng = np.random.default_rng(1)
    x, y = (a.astype(np.float64) for a in regression_data(model, n=3, seed=1))
    ref = ReferenceModel(model, _perturbed(model, 2))
    grads = check_reference_gradients(ref, x, y, MSE, rng, samples=6)
    assert set(grads) == {k for k, _ in model.param_specs()}


# -- initial weights ----------------------------------------------------------------------------
INIT = pf.Sequential([pf.LSTM(3, return_sequences=True), pf.GRU(2)], input_shape=(4, 5))


def test_initial_weights_follow_the_documented_rules():
    specs = dict(INIT.param_specs())
    assert specs["lstm.kernel"].shape == (5, 12) and specs["lstm.recurrent_kernel"].shape == (3, 12)
    assert specs["gru.kernel"].shape == (3, 6) and specs["gru.bias"].shape == (2, 6)
    w = INIT.init_weights(0)
    np.testing.assert_array_equal(w["lstm.bias"], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(w["gru.bias"], 0.0)
    for key, units in (("lstm.recurrent_kernel", 3), ("gru.recurrent_kernel", 2)):
        u = w[key].astype(np.float64)
        np.testing.assert_allclose(u @ u.T, np.eye(units), atol=1e-6, err_msg=key)
    assert np.abs(w["lstm.kernel"]).max() <= math.sqrt(6 / (5 + 12))
    assert not np.array_equal(INIT.init_weights(1)["lstm.recurrent_kernel"], w["lstm.recurrent_kernel"])


def test_weights_round_trip_bitwise(backend):
    trainer = mse_trainer(INIT, backend, seed=5)
    canonical = INIT.init_weights(5)
    for key, value in trainer.get_weights().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, canonical[key], err_msg=key)
    changed = _perturbed(INIT, 6)
    trainer.set_weights(changed)
    for key, value in trainer.get_weights().items():
        np.testing.assert_array_equal(value, changed[key], err_msg=key)


# -- gate layout --------------------------------------------------------------------------------
def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def _lstm_by_hand(xs, w, u, b):
    """One unit, one feature; slice k of each array belongs to gate "ifgo"[k]."""
    h = c = 0.0
    out = []
    for x in xs:
        pre = {gate: w[k] * x + u[k] * h + b[k] for k, gate in enumerate("ifgo")}
        c = _sigmoid(pre["f"]) * c + _sigmoid(pre["i"]) * math.tanh(pre["g"])
        h = _sigmoid(pre["o"]) * math.tanh(c)
        out.append(h)
    return out


def _gru_by_hand(xs, w, u, b):
    """One unit, one feature; slice k of each array belongs to gate "rzn"[k]; b = (b_x, b_h)."""
    h = 0.0
    out = []
    for x in xs:
        a = {gate: w[k] * x + b[0][k] for k, gate in enumerate("rzn")}
        s = {gate: u[k] * h + b[1][k] for k, gate in enumerate("rzn")}
        r, z = _sigmoid(a["r"] + s["r"]), _sigmoid(a["z"] + s["z"])
        n = math.tanh(a["n"] + r * s["n"])
        h = (1 - z) * n + z * h
        out.append(h)
    return out


XS = [0.5, -1.0, 2.0, 0.3]
GATE_CASES = {
    "lstm": (pf.LSTM(1, return_sequences=True), _lstm_by_hand, 4,
             ([0.6, -0.8, 1.1, 0.4], [-0.5, 0.9, 0.7, -1.2], [0.2, 0.3, -0.4, 0.1])),
    "gru": (pf.GRU(1, return_sequences=True), _gru_by_hand, 3,
            ([0.6, -0.8, 1.1], [-0.5, 0.9, 0.7], [[0.2, 0.3, -0.4], [-0.6, 0.5, 0.8]])),
}


@pytest.mark.parametrize("cell", list(GATE_CASES))
def test_gate_layout_matches_values_computed_by_hand(backend, cell):
    layer, by_hand, gates, (w, u, b) = GATE_CASES[cell]
    expected = by_hand(XS, w, u, b)
    for perm in itertools.permutations(range(gates)):               # the check can see a reorder
        if perm != tuple(range(gates)):
            shuffled = [np.asarray(a)[..., list(perm)] for a in (w, u, b)]
            for i in range(3):
                arrays = [shuffled[j] if j == i else np.asarray((w, u, b)[j]) for j in range(3)]
                assert np.abs(np.subtract(by_hand(XS, *arrays), expected)).max() > 1e-3, (perm, i)
    model = pf.Sequential([layer], input_shape=(len(XS), 1))
    trainer = mse_trainer(model, backend)
    trainer.set_weights({f"{cell}.kernel": np.array([w]), f"{cell}.recurrent_kernel": np.array([u]),
                         f"{cell}.bias": np.array(b)})
    out = trainer.predict(np.array(XS, np.float32).reshape(1, -1, 1))
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-5, atol=1e-6)


# -- shapes -------------------------------------------------------------------------------------
def test_shapes_and_errors():
    assert pf.Sequential([pf.LSTM(7)], input_shape=(5, 2)).output_shape == (7,)
    assert pf.Sequential([pf.GRU(7, return_sequences=True)], input_shape=(5, 2)).output_shape == (5, 7)
    for layer in (pf.LSTM(3), pf.GRU(3, name="rnn")):
        with pytest.raises(pf.ShapeError, match=r"\(batch, time, features\)"):
            pf.Sequential([layer], input_shape=(8,))
    with pytest.raises(pf.ConfigError, match="LSTM: units"):
        pf.LSTM(0)
    with pytest.raises(pf.ConfigError, match="GRU: return_sequences"):
        pf.GRU(2, return_sequences="yes")
