"""Issue #3: LayerNorm, Embedding, MultiHeadAttention and TransformerEncoderBlock compute the
canonical semantics on every backend.

Every model runs on all three backends from identical canonical weights and inputs; forward
outputs are compared with the float64 reference and with the first backend at rtol 1e-5 /
atol 1e-6, and gradients (one SGD(lr=1) step, so the update is the gradient) at rtol 1e-4 /
atol 1e-6. Input gradients are measured with a probe: an Embedding fed the ids
``0 .. N*L - 1`` puts every batch position on its own table row, so that row's gradient is the
input gradient of the layer after it. The reference's own gradients are checked against
central finite differences. Then the masks (causal, key padding, a fully masked query), the
per-head column layout computed by hand, parameter names and initial values, and bad input.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import polyframe as pf
from polyframe.reference import ReferenceModel

from conftest import check_reference_gradients, mse_trainer

N = 4
MSE = pf.MeanSquaredError()


def _probe(length: int, features: int) -> pf.Embedding:
    """An Embedding with one row per batch position (see the module docstring)."""
    return pf.Embedding(N * length, features)


MODELS = {
    "layer-norm-sequence": pf.Sequential([_probe(5, 6), pf.LayerNorm()], input_shape=(5,)),
    "layer-norm-large-epsilon": pf.Sequential([_probe(3, 4), pf.LayerNorm(epsilon=0.5)],
                                              input_shape=(3,)),
    "layer-norm-features": pf.Sequential([pf.Dense(5), pf.LayerNorm(epsilon=1e-3), pf.Dense(3)],
                                         input_shape=(4,)),
    "layer-norm-image": pf.Sequential([pf.Conv2D(3, 2), pf.LayerNorm(), pf.Flatten(), pf.Dense(2)],
                                      input_shape=(4, 4, 2)),
    "embedding-repeated-ids": pf.Sequential([                       # ids repeat: gradients add up
        pf.Embedding(7, 4), pf.Conv1D(3, 2, activation="tanh"), pf.Flatten(), pf.Dense(2),
    ], input_shape=(6,)),
    "attention": pf.Sequential([_probe(5, 6), pf.MultiHeadAttention(2, 3, value_dim=4)],
                               input_shape=(5,)),
    "attention-causal": pf.Sequential([
        _probe(5, 6), pf.MultiHeadAttention(3, 2, causal=True, use_bias=False), pf.Flatten(),
        pf.Dense(2),
    ], input_shape=(5,)),
    "encoder-post-norm": pf.Sequential([_probe(5, 6), pf.TransformerEncoderBlock(2, 3, 8)],
                                       input_shape=(5,)),
    "encoder-pre-norm-causal": pf.Sequential([
        _probe(5, 6),
        pf.TransformerEncoderBlock(2, 4, 6, norm_first=True, causal=True, activation="gelu"),
        pf.Conv1D(2, 1),
    ], input_shape=(5,)),
}


def _inputs(model: pf.Model, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    first = model.layers[0]
    if isinstance(first, pf.Embedding):
        length = model.input_shape[0]
        if first.input_dim == N * length:
            return np.arange(N * length, dtype=np.float32).reshape(N, length)
        return rng.integers(0, first.input_dim, size=(N, length)).astype(np.float32)
    return rng.normal(size=(N, *model.input_shape)).astype(np.float32)


def _perturbed(model: pf.Model, seed: int, scale: float = 0.1) -> dict[str, np.ndarray]:
    """Initial weights plus noise, so that biases, gammas and betas are not trivial."""
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0, scale, v.shape)).astype(np.float32)
            for k, v in model.init_weights(seed).items()}


def _run_everywhere(model, backends, x, y, start):
    """Per backend: outputs before the step, loss, and the gradient read off one SGD(lr=1) step."""
    results = {}
    for name in backends:
        trainer = mse_trainer(model, name, optimizer=pf.SGD(learning_rate=1.0))
        trainer.set_weights(start)
        outputs = trainer.predict(x)
        history = trainer.fit(x, y, batch_size=N, shuffle=False, progress=False)
        after = trainer.get_weights()
        assert list(after) == list(start)
        grads = {k: start[k].astype(np.float64) - after[k] for k in start}
        results[name] = (outputs, history.step_losses[0], grads)
    return results


def _assert_parity(results, ref_outputs, ref_loss, ref_grads):
    first = next(iter(results.values()))
    for name, (outputs, loss, grads) in results.items():
        np.testing.assert_allclose(outputs, ref_outputs, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(outputs, first[0], rtol=1e-5, atol=1e-6, err_msg=name)
        assert loss == pytest.approx(ref_loss, rel=1e-5), name
        assert set(grads) == set(ref_grads)
        for key, grad in grads.items():
            np.testing.assert_allclose(grad, ref_grads[key], rtol=1e-4, atol=1e-6, err_msg=f"{name} {key}")
            np.testing.assert_allclose(grad, first[2][key], rtol=1e-4, atol=1e-6, err_msg=f"{name} {key}")


@pytest.mark.parametrize("name", list(MODELS))
def test_backends_match_each_other_and_the_reference(all_backends, name):
    model = MODELS[name]
    x = _inputs(model, 0)
    y = np.random.default_rng(1).normal(size=(N, *model.output_shape)).astype(np.float32)
    start = _perturbed(model, 3)
    ref = ReferenceModel(model, start)
    ref_loss, ref_grads, _ = ref.loss_and_grads(x, y, MSE)
    _assert_parity(_run_everywhere(model, all_backends, x, y, start), ref.forward(x), ref_loss, ref_grads)


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_gradients_match_finite_differences(name):
    model = MODELS[name]
    rng = np.random.default_rng(1)
    x = _inputs(model, 1).astype(np.float64)
    y = rng.normal(size=(N, *model.output_shape))
    ref = ReferenceModel(model, {k: v.astype(np.float64) for k, v in _perturbed(model, 2).items()})
    grads = check_reference_gradients(ref, x, y, MSE, rng, samples=6)
    assert set(grads) == {k for k, _ in model.param_specs()}


# -- masks ----------------------------------------------------------------------------------------
L, S = 5, 6


def _masked_model() -> pf.Model:
    """Cross-attention with a key padding mask; both sequences come through probe Embeddings."""
    query_ids, value_ids = pf.Input((L,), name="query_ids"), pf.Input((S,), name="value_ids")
    mask = pf.Input((S,), name="mask")
    query, value = pf.Embedding(N * L, 6)(query_ids), pf.Embedding(N * S, 5)(value_ids)
    out = pf.MultiHeadAttention(2, 3, value_dim=4, name="attention")([query, value, mask])
    return pf.Model([query_ids, value_ids, mask], out)


def _masked_inputs() -> list[np.ndarray]:
    mask = np.ones((N, S), np.float32)
    mask[1, 3:] = 0.0                                               # trailing padding
    mask[2, :] = 0.0                                                # nothing to attend to
    mask[3, 0] = 0.0
    return [np.arange(N * L, dtype=np.float32).reshape(N, L),
            np.arange(N * S, dtype=np.float32).reshape(N, S), mask]


def test_key_padding_mask_matches_the_reference_everywhere(all_backends):
    model, x = _masked_model(), _masked_inputs()
    y = np.random.default_rng(1).normal(size=(N, L, 6)).astype(np.float32)
    start = _perturbed(model, 5)
    ref = ReferenceModel(model, start)
    ref_loss, ref_grads, _ = ref.loss_and_grads(x, y, MSE)
    results = _run_everywhere(model, all_backends, x, y, start)
    _assert_parity(results, ref.forward(x), ref_loss, ref_grads)
    for name, (outputs, _, grads) in results.items():
        # a query with no allowed key has zero attention weights: its output is the output bias
        np.testing.assert_allclose(outputs[2], np.broadcast_to(start["attention.output_bias"], (L, 6)),
                                   rtol=1e-6, atol=1e-7, err_msg=name)
        assert np.isfinite(outputs).all() and all(np.isfinite(g).all() for g in grads.values())
        # padded keys receive no gradient: their value rows (embedding_1 rows) stay untouched
        padded_rows = np.flatnonzero(x[2].ravel() == 0)
        np.testing.assert_array_equal(grads["embedding_1.embeddings"][padded_rows], 0.0, err_msg=name)


def test_reference_gradients_with_a_key_padding_mask_match_finite_differences():
    model, x = _masked_model(), [a.astype(np.float64) for a in _masked_inputs()]
    rng = np.random.default_rng(2)
    y = rng.normal(size=(N, L, 6))
    ref = ReferenceModel(model, {k: v.astype(np.float64) for k, v in _perturbed(model, 6).items()})
    _, grads, _ = ref.loss_and_grads(x, y, MSE)
    assert set(grads) == {k for k, _ in model.param_specs()}
    for key, grad in grads.items():
        flat = ref.weights[key].reshape(-1)
        for i in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            flat[i] += 1e-6
            plus = ref.loss_and_grads(x, y, MSE)[0]
            flat[i] -= 2e-6
            minus = ref.loss_and_grads(x, y, MSE)[0]
            flat[i] += 1e-6
            assert grad.reshape(-1)[i] == pytest.approx((plus - minus) / 2e-6, rel=1e-5, abs=1e-9), key


@pytest.mark.parametrize("layer", [pf.MultiHeadAttention(2, 3, causal=True),
                                   pf.TransformerEncoderBlock(2, 3, 5, causal=True)],
                         ids=["attention", "encoder"])
def test_causal_outputs_ignore_later_positions(backend, layer):
    model = pf.Sequential([layer], input_shape=(L, 6))
    x = np.random.default_rng(0).normal(size=(N, L, 6)).astype(np.float32)
    changed = x.copy()
    changed[:, -2:] += 3.0
    trainer = mse_trainer(model, backend, seed=1)
    before, after = trainer.predict(x), trainer.predict(changed)
    np.testing.assert_allclose(after[:, :-2], before[:, :-2], rtol=1e-6, atol=1e-6)
    assert np.abs(after[:, -2:] - before[:, -2:]).max() > 1e-2


def test_heads_own_column_slices_and_scores_scale_by_sqrt_key_dim(backend):
    """The documented formula, head by head in plain numpy (not the reference's vectorised form)."""
    heads, dk, dv, e = 2, 3, 2, 4
    model = pf.Sequential([pf.MultiHeadAttention(heads, dk, value_dim=dv)], input_shape=(3, e))
    weights = _perturbed(model, 4, scale=0.3)
    x = np.random.default_rng(5).normal(size=(2, 3, e)).astype(np.float32)
    w = {k.split(".")[-1]: v.astype(np.float64) for k, v in weights.items()}
    expected = np.zeros((2, 3, e))
    for n in range(2):
        concat = []
        for h in range(heads):
            q = x[n] @ w["query_kernel"][:, h * dk:(h + 1) * dk] + w["query_bias"][h * dk:(h + 1) * dk]
            k = x[n] @ w["key_kernel"][:, h * dk:(h + 1) * dk] + w["key_bias"][h * dk:(h + 1) * dk]
            v = x[n] @ w["value_kernel"][:, h * dv:(h + 1) * dv] + w["value_bias"][h * dv:(h + 1) * dv]
            scores = q @ k.T / np.sqrt(dk)
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            concat.append((p / p.sum(axis=1, keepdims=True)) @ v)
        expected[n] = np.concatenate(concat, axis=1) @ w["output_kernel"] + w["output_bias"]
    np.testing.assert_allclose(ReferenceModel(model, weights).forward(x), expected, rtol=1e-12)
    trainer = mse_trainer(model, backend)
    trainer.set_weights(weights)
    np.testing.assert_allclose(trainer.predict(x), expected, rtol=1e-5, atol=1e-6)


# -- parameters -----------------------------------------------------------------------------------
def test_parameter_names_layouts_and_initial_values():
    block = pf.Sequential([pf.Embedding(50, 8), pf.TransformerEncoderBlock(2, 3, 16),
                           pf.MultiHeadAttention(4, 2, value_dim=5)], input_shape=(7,))
    specs = {k: s.shape for k, s in block.param_specs()}
    assert specs == {
        "embedding.embeddings": (50, 8),
        **{f"transformer_encoder_block.attention.{p}_{kind}": shape
           for p, kernel, bias in (("query", (8, 6), (6,)), ("key", (8, 6), (6,)),
                                   ("value", (8, 6), (6,)), ("output", (6, 8), (8,)))
           for kind, shape in (("kernel", kernel), ("bias", bias))},
        "transformer_encoder_block.norm_1.gamma": (8,), "transformer_encoder_block.norm_1.beta": (8,),
        "transformer_encoder_block.ff_1.kernel": (8, 16), "transformer_encoder_block.ff_1.bias": (16,),
        "transformer_encoder_block.ff_2.kernel": (16, 8), "transformer_encoder_block.ff_2.bias": (8,),
        "transformer_encoder_block.norm_2.gamma": (8,), "transformer_encoder_block.norm_2.beta": (8,),
        **{f"multi_head_attention.{p}_{kind}": shape
           for p, kernel, bias in (("query", (8, 8), (8,)), ("key", (8, 8), (8,)),
                                   ("value", (8, 20), (20,)), ("output", (20, 8), (8,)))
           for kind, shape in (("kernel", kernel), ("bias", bias))},
    }
    init = block.init_weights(0)
    table = init["embedding.embeddings"]
    assert np.abs(table).max() <= 0.05 and table.std() > 0.02
    np.testing.assert_array_equal(init["transformer_encoder_block.norm_2.gamma"], 1.0)
    np.testing.assert_array_equal(init["transformer_encoder_block.norm_1.beta"], 0.0)
    np.testing.assert_array_equal(init["multi_head_attention.value_bias"], 0.0)
    limit = np.sqrt(6 / (8 + 20))                                   # glorot over (E, H * Dv)
    assert limit * 0.8 < np.abs(init["multi_head_attention.value_kernel"]).max() <= limit
    assert pf.LayerNorm().epsilon == 1e-5


def test_weights_round_trip(backend):
    model = MODELS["encoder-post-norm"]
    trainer = mse_trainer(model, backend)
    changed = _perturbed(model, 9, scale=0.5)
    trainer.set_weights(changed)
    for key, value in trainer.get_weights().items():
        np.testing.assert_array_equal(value, changed[key], err_msg=key)


# -- bad input ------------------------------------------------------------------------------------
BAD_INPUT = textwrap.dedent("""
    import sys
    import polyframe as pf

    cases = [
        lambda: pf.MultiHeadAttention(2, 0),
        lambda: pf.MultiHeadAttention(2.0, 4),
        lambda: pf.MultiHeadAttention(2, 4, dropout=1.0),
        lambda: pf.TransformerEncoderBlock(2, 4, 0),
        lambda: pf.TransformerEncoderBlock(2, 4, 8, activation="swish"),
        lambda: pf.Embedding(0, 4),
        lambda: pf.LayerNorm(epsilon=0.0),
        lambda: pf.Sequential([pf.Embedding(10, 4)], input_shape=(5, 2)),
        lambda: pf.Sequential([pf.MultiHeadAttention(2, 4)], input_shape=(8,)),
        lambda: pf.Conv2D(5, 3, groups=2),
        lambda: pf.Sequential([pf.Conv2D(4, 3, groups=2)], input_shape=(6, 6, 3)),
        lambda: pf.MultiHeadAttention(2, 4, name="mha")(
            [pf.Input((5, 8)), pf.Input((6, 8)), pf.Input((5,))]),
    ]
    for case in cases:
        try:
            case()
        except pf.PolyframeError as error:
            print(type(error).__name__, "|", error)
        else:
            print("NO ERROR")
    print("frameworks:", sorted(m for m in ("torch", "tensorflow", "jax") if m in sys.modules))
""")


def test_bad_input_raises_polyframe_errors_before_any_framework_import():
    done = subprocess.run([sys.executable, "-c", BAD_INPUT], capture_output=True, text=True,
                          check=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "frameworks: []"
    kinds = [line.split(" | ")[0] for line in lines[:-1]]
    assert kinds == ["ConfigError"] * 7 + ["ShapeError", "ShapeError", "ConfigError", "ShapeError",
                                           "ShapeError"]
    messages = lines[:-1]
    assert "key_dim must be >= 1" in messages[0]
    assert "num_heads must be an integer" in messages[1]
    assert "divisible by groups" in messages[9] and "divisible by groups=2" in messages[10]
    assert "key_padding_mask must have shape (batch, 6)" in messages[11]
    assert "got (batch, 5)" in messages[11]
