"""Progress inside a job: which stage it is in (encode, decode, metrics), how many of that
stage's frames are done, and when the job should end.

A job says where it is with :func:`stage` and :func:`advance` / :func:`reach`. Codecs may call
``advance`` from their frame loops (and :func:`expect` when they make more than one pass over
the frames); ffmpeg-driven codecs need not, since ``bench.ffmpeg.run`` reads ffmpeg's own
frame counter, and ``bench.metrics.measure`` counts its batches. Where the events go is this
process's sink (:func:`sink`): in the driver, :class:`JobBars` (a bar per running job under
the sweep's bar); in a local worker process, the pipe back to the driver
(``bench.executors.pool``). With no sink (a cluster job, a library call) nothing is reported
and the cost is one check per call.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: a job's stages, in order
STAGES = ("encode", "decode", "metrics")
#: at most this many events a second leave a job between stage changes (the pipe to the
#: driver and the terminal need no more)
MAX_RATE = 5.0


@dataclass(frozen=True)
class Event:
    """Job ``job`` is in ``stage``, ``done`` of its ``total`` units (frames) done."""

    job: str
    stage: str
    done: int
    total: int


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sink: Callable[[Event], None] | None = None
        self.job: str | None = None
        self.stage: str | None = None
        self.done = 0
        self.total = 0
        self.sent = 0.0


_state = _State()


@contextmanager
def sink(fn: Callable[[Event], None] | None) -> Iterator[None]:
    """Send this process's events to ``fn`` (called from any thread) while in the block."""
    old, _state.sink = _state.sink, fn
    try:
        yield
    finally:
        _state.sink = old


def forward(event: Event) -> None:
    """Pass an event that came from another process to this process's sink."""
    if _state.sink is not None:
        _state.sink(event)


@contextmanager
def job(job_id: str) -> Iterator[None]:
    """The job whose stages follow."""
    _state.job, _state.stage = job_id, None
    try:
        yield
    finally:
        _state.job = _state.stage = None


@contextmanager
def stage(name: str, total: int) -> Iterator[None]:
    """The job's stage ``name`` over ``total`` units; a stage already open is kept (a metric
    measured through ``measure`` inside the metrics stage)."""
    if _state.stage is not None or _state.job is None:
        yield
        return
    with _state.lock:
        _state.stage, _state.done, _state.total = name, 0, max(int(total), 1)
    try:
        _emit(force=True)
        yield
    finally:
        with _state.lock:
            _state.stage = None


def expect(total: int) -> None:
    """The current stage has ``total`` units after all (a codec that makes two passes over
    the frames, say); a no-op outside a stage."""
    if _state.stage is not None:
        with _state.lock:
            _state.total = max(int(total), 1)
            _state.done = min(_state.done, _state.total)
        _emit(force=True)


def advance(n: int = 1) -> None:
    """``n`` more units of the current stage are done."""
    if _state.stage is not None:
        with _state.lock:
            _state.done = min(_state.done + int(n), _state.total)
        _emit()


def reach(done: int) -> None:
    """``done`` units of the current stage are done (a counter read from a tool)."""
    if _state.stage is not None:
        with _state.lock:
            _state.done = min(max(_state.done, int(done)), _state.total)
        _emit()


def active() -> bool:
    """Whether progress is being reported (a job stage is open and someone listens)."""
    return _state.stage is not None and _state.sink is not None


def _emit(force: bool = False) -> None:
    """Send where the stage is, at most MAX_RATE times a second; sent under the lock, so that
    events leave in order. A sink that fails (a closed pipe or terminal) costs the job its
    progress, never the job."""
    if _state.sink is None:
        return
    with _state.lock:
        fn = _state.sink
        now = time.monotonic()
        if fn is None or _state.stage is None or (not force and now - _state.sent < 1.0 / MAX_RATE and _state.done < _state.total):
            return
        _state.sent = now
        try:
            fn(Event(_state.job or "", _state.stage, _state.done, _state.total))
        except Exception:
            _state.sink = None


# --- the driver's view ---------------------------------------------------------------------


@dataclass
class _Running:
    bar: Any
    stage: str
    since: float
    #: the bar's line below the sweep's bar
    slot: int


class StageRates:
    """Seconds a frame-pixel each stage took in the sweep's finished jobs: encode and decode
    per codec, metrics for all (they depend on the frame size, not the codec)."""

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str], list[float]] = {}

    @staticmethod
    def _key(codec: str, stage_name: str) -> tuple[str, str]:
        return ("", stage_name) if stage_name == "metrics" else (codec, stage_name)

    def learn(self, codec: str, pixels: int, timings: dict[str, float]) -> None:
        for name in STAGES:
            seconds = timings.get(f"{name}_s")
            if seconds is not None and pixels > 0:
                acc = self._sums.setdefault(self._key(codec, name), [0.0, 0.0])
                acc[0] += float(seconds)
                acc[1] += pixels

    def seconds(self, codec: str, stage_name: str, pixels: int) -> float | None:
        acc = self._sums.get(self._key(codec, stage_name))
        return None if not acc or not acc[1] else acc[0] / acc[1] * pixels


def job_eta(done: int, total: int, elapsed: float, later: list[float | None]) -> float | None:
    """Seconds until a job ends: the rest of its stage at the pace it has had, then each later
    stage's estimate; None while any part is unknown (no frame done yet, a stage never seen)."""
    if done <= 0 or any(s is None for s in later):
        return None
    return elapsed / done * (total - done) + sum(later)


class JobBars:
    """A progress bar per running job (its stage and frames, and the job's ETA), below the
    sweep's bar. ``jobs`` maps job ids to (label, frames, pixels a frame)."""

    def __init__(self, jobs: dict[str, tuple[str, str, int, int]], enabled: bool = True, file=None):
        self.jobs, self.enabled, self._file = jobs, enabled, file
        self.rates = StageRates()
        self.running: dict[str, _Running] = {}
        self.ended: set[str] = set()
        self.lock = threading.Lock()

    @property
    def file(self):
        return self._file if self._file is not None else sys.stderr

    def __call__(self, event: Event) -> None:
        if not self.enabled or event.job not in self.jobs or event.job in self.ended:
            return
        with self.lock:
            run = self.running.get(event.job)
            if run is None or run.stage != event.stage:
                run = self._restart(event, run)
            run.bar.n = event.done
            eta = self._eta(event, run)
            run.bar.set_postfix_str(f"job ETA {_clock(eta)}", refresh=False)
            run.bar.refresh()

    def _restart(self, event: Event, run: _Running | None) -> _Running:
        from tqdm import tqdm

        label, codec, _, _ = self.jobs[event.job]
        if run is None:
            taken = {r.slot for r in self.running.values()}
            slot = next(p for p in range(1, len(self.running) + 2) if p not in taken)
            bar = tqdm(total=event.total, unit="frame", position=slot, leave=False, file=self.file, dynamic_ncols=True)
        else:
            bar, slot = run.bar, run.slot
        bar.set_description_str(f"{label} {event.stage}", refresh=False)
        bar.reset(total=event.total)
        run = _Running(bar, event.stage, time.monotonic(), slot)
        self.running[event.job] = run
        return run

    def _eta(self, event: Event, run: _Running) -> float | None:
        _, codec, frames, pixels = self.jobs[event.job]
        after = STAGES[STAGES.index(event.stage) + 1 :] if event.stage in STAGES else ()
        later = [self.rates.seconds(codec, s, frames * pixels) for s in after]
        return job_eta(event.done, event.total, time.monotonic() - run.since, later)

    def finished(self, job_id: str, timings: dict[str, float]) -> None:
        """A job ended: its bar goes, its stage times teach the estimates."""
        with self.lock:
            self.ended.add(job_id)
            run = self.running.pop(job_id, None)
            if run is not None:
                run.bar.close()
            if job_id in self.jobs:
                _, codec, frames, pixels = self.jobs[job_id]
                self.rates.learn(codec, frames * pixels, timings)

    def close(self) -> None:
        with self.lock:
            for run in self.running.values():
                run.bar.close()
            self.running.clear()


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"
