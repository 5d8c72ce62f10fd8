"""The core must not import any framework."""

import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "jax")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_polyframe_loads_no_framework():
    assert _loaded_after("import polyframe") == []


def test_listing_backends_loads_no_framework():
    code = ("import polyframe as pf\nnames = list(pf.registered_backends())\n"
            "assert names, 'no backend registered'\n"
            "[b.availability() for b in pf.registered_backends().values()]\n"
            "pf.default_backend_name()")
    assert _loaded_after(code) == []


def test_cli_parser_loads_no_framework():
    assert _loaded_after("import polyframe.cli\npolyframe.cli._parser()") == []
