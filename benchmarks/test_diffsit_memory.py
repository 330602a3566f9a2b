"""Peak memory of the full-scale Diff-SIT against its weights (issue 35, item 7).

`pytest benchmarks/test_diffsit_memory.py -s` runs the issue's command, `bench run` of the
Wan2.1-1.3B-shaped preset (random weights) on 5 frames of carphone (176x144) at λ 4, in a
child process, with ODFTE in fp32 and in bf16, and reports the child's peak RSS (``ru_maxrss``
of RUSAGE_CHILDREN) against the bytes of the model's weights at that dtype (every parameter
and buffer: ODFTE counted on the meta device, STEM on a real model).

At 176x144 the activations are small: the peak is the weights and what the process holds
without them, the interpreter, torch, diffusers and the metrics' networks (over 1 GB here),
which no sharing of weights removes. That floor is measured by the same command with the tiny
preset (10 MB of weights), and the limit is on what the Wan-shaped model adds to it: at most
1.3 times its weights, one copy and room for activations and a tensor in flight.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("compressai")
pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[1]
PRESET = "wan2.1-1.3b-shaped"
LIMIT = 1.3
results: dict[str, dict] = {}


def command(model: str, dtype: str, out: Path) -> list[str]:
    codec = f"diffsit:model=preset:{model}:allow_untrained=true:dtype={dtype}"
    clip = ["--dataset", "sample", "--sequences", "carphone", "--frames", "5", "--rates", "4"]
    return [sys.executable, "-m", "bench", "run", "--codec", codec, *clip, "--out", str(out), "--quiet"]


def peak_rss(cmd: list[str]) -> tuple[int, float]:
    """Peak RSS in bytes and wall seconds of ``cmd``, run by a fresh interpreter (ru_maxrss of
    RUSAGE_CHILDREN is that of its largest child), from the checkout so it runs this code."""
    code = (
        "import resource, subprocess, sys; "
        f"r = subprocess.run({cmd!r}, capture_output=True, text=True); "
        "sys.stderr.write(r.stdout[-2000:] + r.stderr[-4000:]); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    rc, kb = r.stdout.split()
    assert rc == "0", r.stderr
    return int(kb) * 1024, time.perf_counter() - t


def weights_bytes(model: str, dtype: str) -> int:
    """Every parameter and buffer of the preset's model with ODFTE in ``dtype``."""
    import torch

    from diffsit.model import random_model
    from diffsit.odfte import ODFTE
    from diffsit.pipeline import parse_dtype
    from diffsit.presets import preset_config

    def nbytes(module) -> int:
        return sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers()))

    with torch.device("meta"):
        odfte = ODFTE(preset_config(model).odfte)
        odfte.add_lora()
    stem = random_model(0, preset_config("tiny"))  # STEM's shapes are the same in every preset
    return nbytes(odfte.to(parse_dtype(dtype))) + nbytes(stem) - nbytes(stem.odfte)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_peak_memory_is_one_copy_of_the_weights(dtype, tmp_path, benchmark):
    floor, _ = peak_rss(command("tiny", dtype, tmp_path / "tiny"))
    peak = {}

    def run():
        peak["rss"], peak["s"] = peak_rss(command(PRESET, dtype, tmp_path / "wan"))

    benchmark.pedantic(run, rounds=1, iterations=1)
    weights = weights_bytes(PRESET, dtype)
    r = results[dtype] = {"peak_gb": peak["rss"] / 1e9, "floor_gb": floor / 1e9, "weights_gb": weights / 1e9, "seconds": peak["s"]}
    r["held_x"] = (peak["rss"] - floor) / weights
    benchmark.extra_info.update({k: round(v, 3) for k, v in r.items()})
    out = ROOT / ".benchmarks" / "diffsit_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    assert r["held_x"] <= LIMIT


def pytest_terminal_summary_memory(reporter):
    if results:
        reporter.section(f"Diff-SIT {PRESET} (random weights), bench run of carphone 176x144 x 5 frames: peak RSS")
        for dtype, r in results.items():
            reporter.write_line(
                f"ODFTE {dtype}: peak {r['peak_gb']:.2f} GB, weights {r['weights_gb']:.2f} GB, floor (tiny preset) {r['floor_gb']:.2f} GB: "
                f"the model adds {r['held_x']:.2f}x its weights (limit {LIMIT}x), {r['seconds']:.0f} s"
            )
