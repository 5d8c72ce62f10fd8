"""Level 8, errors: each bad input of the error table raises exactly the declared polyframe error
type on every backend (not a framework exception, not a bare ValueError)."""

from __future__ import annotations

import pytest

from polyframe.errors import PolyframeError

from polyframe_conformance.error_cases import ERROR_CASES, ErrorCase

pytestmark = pytest.mark.pf_level("errors")


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda case: case.id)
def test_error(pf_backend: str, case: ErrorCase) -> None:
    try:
        case.action(pf_backend)
    except PolyframeError as exc:
        assert type(exc) is case.expected, (
            f"raised {type(exc).__name__}, expected {case.expected.__name__}: {exc}")
        assert str(exc), "the error message is empty"
    except Exception as exc:  # the finding: a non-polyframe exception escaped
        pytest.fail(f"raised {type(exc).__module__}.{type(exc).__name__} instead of "
                    f"polyframe's {case.expected.__name__}: {exc}")
    else:
        pytest.fail(f"no error; expected {case.expected.__name__}")
