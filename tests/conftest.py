from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench.video import Video


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


def random_video(frames=3, height=64, width=96, bit_depth=8, seed=0, fps=25.0) -> Video:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    hi = (1 << bit_depth) - 1
    mk = lambda h, w: rng.integers(0, hi + 1, size=(frames, h, w)).astype(dtype)
    return Video(mk(height, width), mk(height // 2, width // 2), mk(height // 2, width // 2), bit_depth=bit_depth, fps=fps)


@pytest.fixture
def weird_dir(tmp_path) -> Path:
    """A folder whose name would break any shell command built by string concatenation."""
    d = tmp_path / "we ird 'q' \"dq\"; echo pwned"
    d.mkdir()
    return d
