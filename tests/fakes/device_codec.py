"""Codecs for executor tests: lossless (the bitstream is the raw frames), slow on purpose, and
telling what they saw. ``FakeGPUCodec`` declares a GPU; each job records the
``CUDA_VISIBLE_DEVICES`` its worker had, when it ran, and the thread pools it saw (torch,
numba, OpenMP's variable), in the record's encoder tools."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench.codec import Codec, EncodeResult, RateSpec, Resources
from bench.video import Video


class FakeCPUCodec(Codec):
    name = "fake-cpu"
    rate_name = "q"
    rate_spec = RateSpec("int", 0, 100)
    default_rates = (1, 2)
    extension = ".raw"
    gpu: ClassVar[bool] = False

    def __init__(
        self,
        *,
        sleep: float = 1.0,
        crash_marker: str | None = None,
        device: str = "cpu",
        only_in_pid: int | None = None,
        threads: int = 1,
        hold: str | None = None,
        segv_if: str | None = None,
        only_rate: int | None = None,
    ):
        """``crash_marker``: the first job to find this file missing creates it and kills its
        own worker process, mid-encode (a retried job then finds it and runs).
        ``only_in_pid``: the encoder "exists" in that process alone (the driver), as on a
        cluster whose nodes lack it. ``threads``: the CPUs a job asks for.
        ``hold``: a file; while it exists a job waits (``sleep`` seconds at most) instead of
        sleeping, after touching ``HOLD.started.RATE``: a test lets the rerun of a job it
        stopped be quick by removing the file. ``segv_if``: a file; while it exists a job
        dies of a segmentation fault mid-encode, as native code can.
        ``only_rate``: sleep, hold and segv_if apply to that rate point alone."""
        self.sleep, self.crash_marker, self.device, self.only_in_pid = sleep, crash_marker, device, only_in_pid
        self.threads, self.hold, self.segv_if, self.only_rate = threads, hold, segv_if, only_rate

    def check(self) -> None:
        from bench.codec import CodecUnavailable

        if self.only_in_pid is not None and os.getpid() != self.only_in_pid:
            raise CodecUnavailable("fake-encoder is not installed here")

    def identity(self) -> dict:
        return {"codec": self.name, "format": "raw 8-bit 4:2:0"}  # lossless: nothing else changes a number

    def resources(self) -> Resources:
        return Resources(gpu=self.gpu, cpus=self.threads)

    def encode(self, video: Video, rate, workdir: Path) -> EncodeResult:
        start = time.time()
        if self.crash_marker and not Path(self.crash_marker).exists():
            Path(self.crash_marker).write_text(str(os.getpid()))
            os._exit(1)  # the worker dies mid-job, as a node would
        if self.only_rate is None or int(rate) == self.only_rate:
            self._wait(rate)
        path = Path(workdir) / f"q{rate}{self.extension}"
        path.write_bytes(video.y.tobytes() + video.u.tobytes() + video.v.tobytes())
        self._shape = (video.frames, video.height, video.width, video.fps)
        tools = {
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "start": start,
            "end": time.time(),
            "pid": os.getpid(),
            "node": socket.gethostname(),
            **_threads(),
        }
        return EncodeResult(path, tools=tools)

    def _wait(self, rate) -> None:
        if self.segv_if and Path(self.segv_if).exists():
            import ctypes

            ctypes.string_at(0)  # reads address 0: SIGSEGV
        if not self.hold:
            time.sleep(self.sleep)
            return
        Path(f"{self.hold}.started.{rate}").touch()
        end = time.time() + self.sleep
        while Path(self.hold).exists() and time.time() < end:
            time.sleep(0.2)

    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        n, h, w, fps = self._shape
        data = np.frombuffer(Path(path).read_bytes(), np.uint8)
        y = data[: n * h * w].reshape(n, h, w)
        c = data[n * h * w :].reshape(2, n, h // 2, w // 2)
        return Video(y.copy(), c[0].copy(), c[1].copy(), bit_depth=8, fps=fps)


def _threads() -> dict:
    import numba
    import torch

    return {"torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


class FakeGPUCodec(FakeCPUCodec):
    name = "fake-gpu"
    gpu = True
