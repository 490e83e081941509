"""A summary on the meta device must stay light: the compiler stack costs over a second and ~70 MB to import.

These are module-set checks, not timings: they fail the day some code path on meta starts importing
`torch._dynamo` / `torch._inductor` again (as `torch.randn(..., device="meta")` once did).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_HEAVY = ("torch._dynamo", "torch._inductor")

_PROBE = """
import sys
from typer.testing import CliRunner
from unetinspect.cli import app
result = CliRunner().invoke(app, [{args}])
assert result.exit_code == 0, result.output
print(",".join(sorted(m for m in sys.modules if m.startswith({heavy}))))
"""


def _heavy_modules(*args: str, cwd: Path) -> list[str]:
    code = _PROBE.format(args=", ".join(repr(a) for a in args), heavy=repr(_HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         cwd=cwd)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return [m for m in line.split(",") if m]


def test_meta_summary_does_not_import_the_compiler_stack(tmp_path: Path):
    assert _heavy_modules("summary", "tiny", cwd=tmp_path) == []


def test_meta_summary_json_does_not_import_the_compiler_stack(tmp_path: Path):
    assert _heavy_modules("summary", "sd15", "--format", "json", cwd=tmp_path) == []


def test_meta_diagram_data_does_not_import_the_compiler_stack(tmp_path: Path):
    assert _heavy_modules("diagram", "tiny", "--format", "dot", cwd=tmp_path) == []


def test_no_numpy_warning_where_numpy_is_missing(tmp_path: Path):
    """torch, imported where numpy is not installed, warns "Failed to initialize NumPy": not our user's problem."""
    code = ("import sys; sys.modules['numpy'] = None\n"
            "from typer.testing import CliRunner\nfrom unetinspect.cli import app\n"
            "r = CliRunner().invoke(app, ['summary', 'tiny']); assert r.exit_code == 0, r.output")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "NumPy" not in out.stderr
