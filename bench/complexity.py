"""Complexity and timing as results: MACs per pixel and seconds per frame, with what they count.

Learned-codec papers report kMAC/pixel and encode/decode time, and readers cannot reproduce
them (two profilers, 2236 against 433 kMAC/px for one model) nor tell whether a time was the
network alone or the whole frame loop. Here each is measured one declared way:

- **kMAC/pixel** (codecs that declare ``learned = True``): torch's ``FlopCounterMode`` over the
  codec's whole ``encode()`` and ``decode()`` calls, divided by the source's pixels (frames x
  width x height). It counts matrix multiplications, convolutions and attention, 2 FLOPs per
  MAC; elementwise operations, entropy coding and native (C++) code are not counted.
- **seconds per frame**: wall time of the whole ``encode()``/``decode()`` call (frame loop,
  entropy coding, file I/O, padding) over the frames, on the host and threads recorded with it;
  on CUDA the device is synchronised before the clock stops. Not network-only.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Iterator
from typing import Any

METHOD = (
    "kMAC/pixel: torch FlopCounterMode over the whole encode()/decode() call (matmul, convolution, attention; 2 FLOPs = 1 MAC; "
    "elementwise ops, entropy coding and native code not counted) / (frames x width x height); seconds per frame: wall time of the "
    "whole call (frame loop, entropy coding, I/O), CUDA synchronised"
)


class Count:
    """MACs counted under ``counted`` (0 when the codec is not learned, or nothing ran in torch)."""

    def __init__(self) -> None:
        self.flops = 0

    def kmac_per_pixel(self, pixels: int) -> float:
        return self.flops / 2 / pixels / 1000


@contextlib.contextmanager
def counted(enabled: bool, device: str = "cpu") -> Iterator[Count]:
    count = Count()
    if not enabled:
        yield count
        return
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    with mode:
        yield count
    _synchronise(device)
    count.flops = int(mode.get_total_flops())


def _synchronise(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def host(device: str = "cpu") -> dict[str, Any]:
    """What a time was measured on: the CPU model or GPU and its driver, and the threads."""
    import torch

    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device), "method": METHOD}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# --- memory ---------------------------------------------------------------------------------

#: what a job's peak memory counts
MEMORY_SCOPE = (
    "peak resident memory of the process that ran the job, counted from the job's start (Linux's clear_refs), which includes "
    "what the process held when the job started (rss_at_start_mb: its imports, and in a worker what earlier jobs left); tools "
    "run as child processes (ffmpeg, HM/VTM encoders) are not included"
)


def reset_peak_memory() -> bool:
    """Count this process's peak resident memory afresh from now (Linux's ``clear_refs``
    value 5): a worker that serves many jobs reports each job's own peak. False where the
    kernel does not allow it; the peak is then the process's since it started."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmHWM, VmRSS) in MiB; None where there is none."""
    with contextlib.suppress(OSError, ValueError):
        for line in open("/proc/self/status"):
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return None


def peak_memory_mb() -> float:
    """This process's peak resident memory in MiB (VmHWM; ru_maxrss where /proc has none)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB on Linux


def resident_memory_mb() -> float | None:
    """This process's resident memory now, in MiB (None where /proc has none)."""
    return _status_mb("VmRSS")


# --- the report's table ------------------------------------------------------------------------

#: summary.csv's cost columns, in the report's order, with their headings
COST_COLUMNS = (
    ("encode_s_per_frame", "encode s/frame"),
    ("decode_s_per_frame", "decode s/frame"),
    ("encode_kmac_per_px", "encode kMAC/px"),
    ("decode_kmac_per_px", "decode kMAC/px"),
)


def cost_table(summary) -> list[dict[str, Any]]:
    """Per results folder and codec, each cost column's mean over the jobs that have it,
    weighted by their frames, with their frame sizes and the job count. Measured here only:
    imported rows (published timings, on the authors' machines) are left out, and so is a
    codec with no cost column at all. Values that are not numbers count as missing."""
    import pandas as pd

    cols = [c for c, _ in COST_COLUMNS if c in summary]
    if not cols or summary.empty:
        return []
    own = summary[~summary["imported"].fillna(False).astype(bool)] if "imported" in summary else summary
    out = []
    for (folder, codec), rows in own.groupby(["results_dir", "codec"], sort=True):
        frames = pd.to_numeric(rows.get("frames"), errors="coerce") if "frames" in rows else pd.Series(1.0, index=rows.index)
        values, used = {}, []
        for c in cols:
            v = pd.to_numeric(rows[c], errors="coerce")
            ok = v.notna() & frames.gt(0)
            if ok.any():
                values[c] = float((v[ok] * frames[ok]).sum() / frames[ok].sum())
                used.append(ok)
        if values:
            have = rows[pd.concat(used, axis=1).any(axis=1)]
            out.append({"folder": folder, "codec": str(codec), "jobs": len(have), "sizes": _sizes(have), "values": values})
    return out


def _sizes(rows) -> str:
    import pandas as pd

    if "width" not in rows or "height" not in rows:
        return ""
    wh = pd.DataFrame({"w": pd.to_numeric(rows["width"], errors="coerce"), "h": pd.to_numeric(rows["height"], errors="coerce")}).dropna()
    return ", ".join(sorted({f"{int(w)}x{int(h)}" for w, h in zip(wh["w"], wh["h"], strict=True)}))
