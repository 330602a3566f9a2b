from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import fake_ffmpeg as _fake_ffmpeg

# tests/fixtures holds plugin packages written outside the tree, with test suites of their own
# that import the installed plugin: tests/bench/test_thirdparty_codec.py installs each and runs its
# suite in a process of its own
collect_ignore = ["fixtures"]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip, saying why, where torch sees no CUDA device."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason=f"needs a CUDA device; torch {torch.__version__} sees none (torch.cuda.is_available() is False)")
        for item in gpu:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Derived clips (sample decodes, synthetic sources) go to one cache per test session,
    unless BENCH_CACHE points at a warm one."""
    if not os.environ.get("BENCH_CACHE"):
        os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))
    yield


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    from bench.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


@pytest.fixture(scope="session")
def synthetic():
    from bench.datasets import DATASETS

    return {s.name: s for s in DATASETS["synthetic"].resolve(None)}


@pytest.fixture
def weird_dir(tmp_path) -> Path:
    """A folder whose name would break any shell command built by string concatenation."""
    d = tmp_path / "we ird 'q' \"dq\"; echo pwned"
    d.mkdir()
    return d


@pytest.fixture
def fake_ffmpeg(tmp_path):
    """``fake_ffmpeg(encoders)``: a stand-in ffmpeg that lists only ``encoders`` (support.py)."""
    return lambda encoders: _fake_ffmpeg(tmp_path, encoders)
