"""The codebase's shape, checked like its behaviour (issue 33): no import cycle among
first-party modules (function-level imports counted) and no function over 60 lines."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("codebase_tool", ROOT / "tools" / "codebase.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_counting_function_level_imports():
    assert _tool().cycles() == []


def test_no_function_over_sixty_lines():
    long = _tool().long_functions()
    assert long == [], "\n".join(f"{p}:{n}: {q} is {k} lines" for p, n, q, k in long)


def test_the_cycle_finder_sees_a_function_level_cycle(tmp_path, monkeypatch):
    """A cycle hidden in a function body is found: the check can fail."""
    tool = _tool()
    pkg = tmp_path / "bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "PACKAGES", ("bench",))
    assert tool.cycles() == [["bench.a", "bench.b"]]
    (pkg / "b.py").write_text("def f():\n" + "    x = 1\n" * 61)
    assert [q for _, _, q, _ in tool.long_functions()] == ["f"]


def test_the_benchmarks_still_import():
    """benchmarks/ runs by hand, not in CI: a refactor that moves what they import would
    leave them broken unseen. Collecting them imports every module."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(ROOT / "benchmarks")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
