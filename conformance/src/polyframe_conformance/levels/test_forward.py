"""Level 2, forward: every layer and composed models, canonical weights in, inference outputs
(``predict`` and ``eval_step``) vs the float64 reference: rtol 1e-5, atol 1e-6. Loss values are
the gradient level's concern."""

from __future__ import annotations

import numpy as np
import pytest

from polyframe.reference import ReferenceModel

from polyframe_conformance import Tolerance
from polyframe_conformance.cases import MODEL_CASES, ModelCase, case_weights, targets_for
from polyframe_conformance.harness import build

pytestmark = pytest.mark.pf_level("forward")

OUTPUTS = Tolerance(rtol=1e-5, atol=1e-6)
SEED = 11


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.id)
def test_forward(pf_backend: str, pf_check, case: ModelCase) -> None:
    model = case.build()
    weights = case_weights(model, SEED)
    rng = np.random.default_rng(SEED)
    x = case.inputs(rng, model.input_shape, case.batch)
    y = case.loss.check_targets(targets_for(case.loss, model.output_shape, rng, case.batch),
                                model.output_shape)
    expected = ReferenceModel(model, weights).forward(x)
    executable = build(pf_backend, model, weights, loss=case.loss)
    prepared = executable.prepare_inputs(x)
    pf_check.close("predict outputs", executable.predict(prepared), expected, OUTPUTS)
    pf_check.close("eval_step outputs", executable.eval_step(prepared, y).outputs, expected, OUTPUTS)
