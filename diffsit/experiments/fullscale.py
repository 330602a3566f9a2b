"""``python -m diffsit fullscale``: peak memory and time of Diff-SIT at full scale.

Encode and decode of 1080p x 96 frames with the ``wan2.1-1.3b-shaped`` preset (ODFTE with
Wan2.1-T2V-1.3B's shapes, random weights: time and memory do not depend on their values;
STEM at its own size), ODFTE in bf16 by default.

- **CUDA** (a GPU present, or ``--device cuda``): measured. Time is wall time with the
  device synchronised; memory is ``torch.cuda.max_memory_allocated`` for each of encode and
  decode, the weights included.
- **CPU**: an *estimate*, and labelled one, because one 1080p window takes hours on a few
  cores. STEM, which does not grow with the model, is measured on real 1080p frames (one
  group of three) and scaled to 96 frames. ODFTE's work is counted exactly, not sampled: its
  forward runs on PyTorch's ``meta`` device (shapes, no data) under ``FlopCounterMode``, for
  each window the clip has, and the count is divided by this machine's measured throughput
  on the two operations that dominate it (a large matmul and a 3-D convolution, in the
  chosen dtype). Peak memory is the weights plus the most live activation bytes seen in that
  meta forward (a dispatch mode that adds each result's bytes and subtracts them when it is
  freed), with attention's N x N score matrices left out because fused attention (flash,
  memory-efficient SDPA) never stores them; the VAE's spatial tiling is on, as for a GPU.
"""

from __future__ import annotations

import json
import math
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from bench.video import Video

from ..gop import overlapping_chunks
from ..model import random_model
from ..odfte import ODFTE
from ..pipeline import DTYPES, decode_samples, encode_video, reconstruct
from ..presets import preset_config
from ..stem.exact import samples_to_float
from ..stem.intra import coded_size
from ..zoo import load_model

FRAMES, WIDTH, HEIGHT = 96, 1920, 1080


class LiveBytes(TorchDispatchMode):
    """Peak of the bytes held by live tensors created under it (meta tensors included)."""

    def __init__(self, min_square: int = 8192):
        super().__init__()
        self.live = self.peak = 0
        self.min_square = min_square

    def _scores(self, t: torch.Tensor) -> bool:
        # attention's (..., N, N) scores: the meta device's SDPA materialises them, fused
        # attention on a GPU does not
        return t.dim() >= 2 and t.shape[-1] == t.shape[-2] >= self.min_square

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not self._scores(t):
                n = t.numel() * t.element_size()
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, n)
        return out

    def _free(self, n: int) -> None:
        self.live -= n


def _throughput(dtype: torch.dtype, device: str = "cpu") -> dict[str, float]:
    """FLOP/s of this device on a 2048^3 matmul and on a Wan-VAE-like 3-D convolution."""
    a, b = torch.randn(2048, 2048, dtype=dtype, device=device), torch.randn(2048, 2048, dtype=dtype, device=device)
    x = torch.randn(1, 96, 3, 64, 64, dtype=dtype, device=device)
    w = torch.randn(96, 96, 3, 3, 3, dtype=dtype, device=device)
    out = {}
    for name, fn, flops in (
        ("matmul", lambda: a @ b, 2 * 2048**3),
        ("conv3d", lambda: torch.nn.functional.conv3d(x, w, padding=(0, 1, 1)), 2 * 96 * 27 * 96 * 64 * 64 * 1),
    ):
        fn()
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            fn()
        out[name] = reps * flops / (time.perf_counter() - t)
    return out


def _odfte_count(odfte, windows: int, window: int) -> tuple[float, dict[str, float], int]:
    """FLOPs of ODFTE over ``windows`` windows of 1080p, by operator class, and the peak live
    activation bytes of one window, from a meta-device forward."""
    ph, pw = coded_size(HEIGHT, WIDTH)
    x = torch.empty(1, 3, window, ph, pw, device="meta", dtype=odfte.dtype)
    tmap = torch.ones(1, window, device="meta")
    counter = FlopCounterMode(display=False)
    live = LiveBytes()
    with torch.no_grad(), counter, live:
        odfte(x, tmap)
    by_op = {str(k): v * windows for k, v in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops() * windows, by_op, live.peak


def run(device: str | None = None, dtype: str = "bf16", frames: int = FRAMES) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = preset_config("wan2.1-1.3b-shaped")
    windows = len(overlapping_chunks(frames, config.window, config.window_overlap))
    report: dict = {"frames": frames, "size": f"{WIDTH}x{HEIGHT}", "preset": "wan2.1-1.3b-shaped", "odfte_dtype": dtype, "device": device, "windows": windows}
    if device == "cuda":
        return _measure_cuda(report, DTYPES[dtype], frames)
    return _estimate_cpu(report, config, DTYPES[dtype], windows, frames)


def _measure_cuda(report: dict, torch_dtype: torch.dtype, frames: int, device: str = "cuda") -> dict:
    """Encode and decode measured: wall time (synchronised) and peak memory of each."""
    video = _video(frames)
    # cast on the CPU, one tensor at a time: the GPU never holds the float32 weights
    model = load_model("preset:wan2.1-1.3b-shaped", allow_untrained=True, dtype=torch_dtype).to(device)
    report["gpu"] = torch.cuda.get_device_name()
    torch.cuda.synchronize()
    for phase in ("encode", "decode"):
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        if phase == "encode":
            data = encode_video(model, video, device=device, output=False).data
        else:
            stream, samples = decode_samples(model, data, device=device)
            reconstruct(model, stream, samples_to_float(samples))
        torch.cuda.synchronize()
        report[phase] = {"seconds": time.perf_counter() - t, "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "measured": True}
    report["bytes"] = len(data)
    return report


def _estimate_cpu(report: dict, config, torch_dtype: torch.dtype, windows: int, frames: int) -> dict:
    """STEM measured on one group of three 1080p frames and scaled, ODFTE counted."""
    video = _video(3)
    stem = random_model(0, preset_config("tiny"))  # STEM's shapes are the same in every preset
    t = time.perf_counter()
    data = encode_video(stem, video, output=False, strength_block=0).data
    stem_enc = (time.perf_counter() - t) / video.frames
    t = time.perf_counter()
    decode_samples(stem, data)
    stem_dec = (time.perf_counter() - t) / video.frames
    with torch.device("meta"):
        odfte = ODFTE(config.odfte)
        odfte.add_lora()
    odfte.to(torch_dtype)
    params = sum(p.numel() * p.element_size() for p in odfte.parameters())
    flops, by_op, act_peak = _odfte_count(odfte, windows, config.window)
    rates = _throughput(torch_dtype)
    conv = sum(v for k, v in by_op.items() if "convolution" in k)
    odfte_seconds = conv / rates["conv3d"] + (flops - conv) / rates["matmul"]
    stem_params = sum(p.numel() * 4 for n, p in stem.named_parameters() if not n.startswith("odfte."))
    report.update(
        {
            "method": "estimate: STEM measured on 3 frames and scaled; ODFTE FLOPs counted on the meta device, over measured FLOP/s",
            "odfte_tflop": flops / 1e12,
            "odfte_tflop_by_op": {k: v / 1e12 for k, v in by_op.items()},
            "cpu_gflops": {k: v / 1e9 for k, v in rates.items()},
            "encode": {
                "seconds": stem_enc * frames,
                "peak_gib": None,
                "measured": False,
                "note": "STEM only: the preset has no strength map, so ODFTE does not run in the encoder",
            },
            "decode": {
                "seconds": stem_dec * frames + odfte_seconds,
                "stem_seconds": stem_dec * frames,
                "odfte_seconds": odfte_seconds,
                "peak_gib": (params + stem_params + act_peak) / 2**30,
                "weights_gib": (params + stem_params) / 2**30,
                "activations_gib": act_peak / 2**30,
                "measured": False,
            },
        }
    )
    return report


def _video(frames: int):
    """A 1080p clip with structure and motion: 8x8 blocks of random grey levels, shifted by a
    pixel each frame (time and memory do not depend on the content)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (HEIGHT // 8 + 2, WIDTH // 8 + 2), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8), dtype=np.uint8))
    y = np.stack([big[i % 8 : i % 8 + HEIGHT, i % 8 : i % 8 + WIDTH] for i in range(frames)])
    uv = np.full((frames, HEIGHT // 2, WIDTH // 2), 128, np.uint8)
    return Video(y, uv, uv.copy(), bit_depth=8, fps=25.0)


def main(args) -> int:
    report = run(args.device, args.dtype, args.frames)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    enc, dec = report["encode"], report["decode"]
    kind = "measured" if dec["measured"] else "ESTIMATED"
    peak = f"{dec['peak_gib']:.1f} GiB" if dec["peak_gib"] is not None else "n/a"
    print(f"{kind}: encode {enc['seconds']:.0f} s, decode {dec['seconds']:.0f} s ({math.ceil(dec['seconds'] / 3600)} h), decode peak {peak}")
    return 0
