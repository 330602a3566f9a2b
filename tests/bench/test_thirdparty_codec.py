"""A codec plugin written outside the tree (tests/fixtures/thirdparty_codec) passes the reusable
contract with no edit of this tree's tests, and the contract catches a broken one.

The package is installed as a user would (pip, from its pyproject.toml, into a folder of its
own: never into this environment), and its own test suite runs with pytest in a process whose
path has that folder and this checkout's ``bench``: the codec is found through its
``bench.codecs`` entry point, as an installed plugin is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tests" / "fixtures" / "thirdparty_codec"

BROKEN = """
from bench.testing import CodecContract
from thirdparty_codec import broken


class TestCrashingCheck(CodecContract):
    codec_class = broken.CrashingCheck


class TestUndeclaredRefusal(CodecContract):
    codec_class = broken.UndeclaredRefusal


class TestLyingSizes(CodecContract):
    codec_class = broken.LyingSizes


class TestStatefulDecode(CodecContract):
    codec_class = broken.StatefulDecode


class TestNotInstalled(CodecContract):
    codec_class = broken.NotInstalled
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package pip-installed into a folder of its own; its source copied first, so the
    build leaves nothing in the checkout."""
    work = tmp_path_factory.mktemp("thirdparty")
    source = shutil.copytree(PACKAGE, work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    target = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", "--target", str(target), str(source)]
    subprocess.run(pip, check=True, capture_output=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert (target / "thirdparty_codec" / "__init__.py").is_file()
    return target


def _pytest(tests: Path, site: Path, tmp: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rfs",
        "-p",
        "no:cacheprovider",
        "--basetemp",
        str(tmp / "basetemp"),
        "--rootdir",
        str(tests.parent),
        str(tests),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tests.parent)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_plugin_from_outside_the_tree_passes_the_contract_in_its_own_suite(installed, tmp_path):
    suite = tmp_path / "suite"
    shutil.copytree(PACKAGE / "tests", suite)
    code, out = _pytest(suite, installed, tmp_path)
    assert code == 0, out
    assert re.search(r"\b3 passed\b", out) and "skipped" not in out and "failed" not in out, out


def test_the_contract_fails_a_broken_plugin_and_skips_one_not_installed(installed, tmp_path):
    suite = tmp_path / "broken"
    suite.mkdir()
    (suite / "test_broken.py").write_text(BROKEN)
    code, out = _pytest(suite, installed, tmp_path)
    assert code == 1, out
    failed = set(re.findall(r"FAILED \S+::(Test\w+)::test_codec_contract", out))
    assert failed == {"TestCrashingCheck", "TestUndeclaredRefusal", "TestLyingSizes", "TestStatefulDecode"}, out
    assert "check() raised ImportError: libquant.so" in out and "declares nothing missing" in out
    assert re.search(r"SKIPPED .*tp-quant: needs the quant encoder binary \(looked in /opt/quant/bin\)", out), out
