"""Level 3, gradients: one training step with SGD at learning rate 1, so each parameter's update
is its gradient, vs the float64 reference in training mode.

Checked: the loss in inference (``eval_step``) and training mode (rtol 1e-5), the training-mode outputs and the non-trainable state after the
step, e.g. BatchNorm's moving statistics (rtol 1e-5, atol 1e-6), every parameter gradient and the
input gradient (rtol 1e-4, atol 1e-6). The input gradient ``G`` is observed through an identity
Dense layer put in front of the model (see :class:`polyframe_conformance.harness.Probe`): its bias
gradient is ``sum_n G[n]`` and its kernel gradient ``x^T G``.
"""

from __future__ import annotations

import numpy as np
import pytest

import polyframe as pf
from polyframe.losses import Loss
from polyframe.reference import ReferenceModel, reference_loss

from polyframe_conformance import Checker, Tolerance
from polyframe_conformance.cases import LOSS_CASES, MODEL_CASES, LossCase, ModelCase, case_weights, targets_for
from polyframe_conformance.harness import build, with_input_probe

pytestmark = pytest.mark.pf_level("gradients")

LOSS = Tolerance(rtol=1e-5, atol=1e-7)
OUTPUTS = Tolerance(rtol=1e-5, atol=1e-6)
STATE = Tolerance(rtol=1e-5, atol=1e-6)
GRADIENTS = Tolerance(rtol=1e-4, atol=1e-6)
SEED = 12


def check_training_step(backend: str, check: Checker, model: pf.Model, loss: Loss, x: np.ndarray,
                        y: np.ndarray, weights: dict[str, np.ndarray], *, input_gradient: bool) -> None:
    """Run one SGD(lr=1) step on ``backend`` and compare everything it changes with the reference."""
    labels = {key: key for key in weights}
    if input_gradient:
        probe = with_input_probe(model)
        model, weights = probe.model, probe.weights(weights)
        labels = {probed: key for key, probed in probe.keys.items()}
        labels[probe.bias] = "input (sum over the batch)"
        labels[probe.kernel] = "input (x^T G)"
    y = loss.check_targets(y, model.output_shape)
    reference = ReferenceModel(model, weights)
    outputs = reference.forward(x, training=True)
    value, grads, _ = reference.loss_and_grads(x, y, loss, update_state=True)
    executable = build(backend, model, weights, loss=loss, optimizer=pf.SGD(1.0))
    prepared = executable.prepare_inputs(x)
    inference = reference_loss(loss, ReferenceModel(model, weights).forward(x), y)[0]
    check.close("eval_step loss", executable.eval_step(prepared, y).loss, inference, LOSS)
    result = executable.train_step(prepared, y)
    after = executable.get_weights()
    check.close("training loss", result.loss, value, LOSS)
    check.close("training outputs", result.outputs, outputs, OUTPUTS)
    for key, spec in model.param_specs():
        if spec.trainable:
            observed = weights[key].astype(np.float64) - after[key].astype(np.float64)
            check.close(f"gradient {labels[key]}", observed, grads[key], GRADIENTS)
        else:
            check.close(f"state {labels[key]} after the step", after[key], reference.weights[key], STATE)


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if not c.dropout], ids=lambda case: case.id)
def test_gradients(pf_backend: str, pf_check: Checker, case: ModelCase) -> None:
    model = case.build()
    rng = np.random.default_rng(SEED)
    x = case.inputs(rng, model.input_shape, case.batch)
    y = targets_for(case.loss, model.output_shape, rng, case.batch)
    check_training_step(pf_backend, pf_check, model, case.loss, x, y, case_weights(model, SEED),
                        input_gradient=case.input_gradient)


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda case: case.id)
def test_loss_gradients(pf_backend: str, pf_check: Checker, case: LossCase) -> None:
    model = pf.Sequential([pf.Dense(6, activation="tanh"), case.head()], input_shape=(5,))
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = targets_for(case.loss, model.output_shape, rng, 8)
    check_training_step(pf_backend, pf_check, model, case.loss, x, y, case_weights(model, SEED),
                        input_gradient=True)
