"""Progress inside a job (bench.progress): stages and frames reach the driver from this
process, from a worker process, and from ffmpeg's own frame counter; the job's ETA."""

from __future__ import annotations

import io
import re
import threading

import pytest

from bench import progress
from bench.executors.pool import WorkerPool
from bench.progress import Event, JobBars, StageRates, job_eta


def _plan(tmp_path, codec="x265", metrics=("psnr", "ewarp:flow=dis_fast"), frames=6):
    from bench.datasets import get_dataset
    from bench.plan import plan

    return plan(
        codecs=[(codec, {})],
        dataset="synthetic",
        sequences=get_dataset("synthetic").resolve(None, ["testsrc2"]),
        rates=["37"],
        frames=frames,
        metrics=list(metrics),
        device="cpu",
        out=tmp_path / "p",
    )


def test_job_eta_is_the_stage_left_at_its_pace_then_the_later_stages():
    # 10 of 40 frames in 5 s: 15 s left in this stage, then 7 s and 3 s
    assert job_eta(10, 40, 5.0, [7.0, 3.0]) == pytest.approx(25.0)
    assert job_eta(40, 40, 9.0, []) == 0.0
    assert job_eta(0, 40, 5.0, [1.0]) is None  # no pace yet
    assert job_eta(10, 40, 5.0, [None]) is None  # a stage never seen


def test_stage_rates_learn_per_codec_and_share_metrics():
    rates = StageRates()
    rates.learn("x265", 100, {"encode_s": 2.0, "decode_s": 0.5, "metrics_s": 4.0})
    assert rates.seconds("x265", "encode", 300) == pytest.approx(6.0)
    assert rates.seconds("vvenc", "encode", 300) is None
    assert rates.seconds("vvenc", "metrics", 50) == pytest.approx(2.0)  # metrics: any codec


def test_nothing_is_reported_outside_a_job_or_without_a_sink():
    seen = []
    progress.advance(3)  # no job, no sink: a no-op
    with progress.sink(seen.append):
        with progress.stage("encode", 5):  # no job open: nothing
            progress.advance(1)
        assert not progress.active()
        with progress.job("j"), progress.stage("encode", 5):
            assert progress.active()
            progress.advance(2)
            progress.reach(5)
            progress.reach(3)  # a counter never goes back
    assert seen[0] == Event("j", "encode", 0, 5) and seen[-1] == Event("j", "encode", 5, 5)
    assert [e.done for e in seen] == sorted(e.done for e in seen)


def test_a_stage_inside_a_stage_counts_in_the_outer_one():
    seen = []
    with progress.sink(seen.append), progress.job("j"), progress.stage("metrics", 4):
        with progress.stage("metrics", 100):
            progress.advance(4)
    assert {e.total for e in seen} == {4} and seen[-1].done == 4


def test_run_job_reports_each_stage_to_its_last_frame(tmp_path):
    """Encode and decode follow ffmpeg's frame counter (real x265), metrics count batches."""
    from bench.jobs import run_job

    job = _plan(tmp_path).jobs[0]
    seen: list[Event] = []
    with progress.sink(seen.append):
        rec = run_job(job).record
    assert rec["status"] == "done", rec.get("error")
    stages = [e.stage for e in seen]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == ["encode", "decode", "metrics"]
    last = {e.stage: e for e in seen}
    assert last["encode"].done == last["encode"].total == 6
    assert last["decode"].done == last["decode"].total == 6
    assert last["metrics"].done == last["metrics"].total == 6  # one pass: both metrics per frame
    assert {e.job for e in seen} == {job.job_id}


def _reports(n: int) -> str:
    with progress.job("w"), progress.stage("encode", n):
        for _ in range(n):
            progress.advance(1)
    return "answer"


def test_a_worker_process_reports_on_its_pipe(tmp_path):
    seen = []
    pool = WorkerPool(1)
    try:
        with progress.sink(seen.append):
            out = list(pool.run(_reports, [3]))
    finally:
        pool.close()
    assert out == [(3, "answer")]  # progress messages are not answers
    assert seen[0] == Event("w", "encode", 0, 3) and seen[-1] == Event("w", "encode", 3, 3)


def test_job_bars_show_each_running_job_with_its_eta():
    out = io.StringIO()
    bars = JobBars({"a": ("x265 clip 37", "x265", 10, 64), "b": ("x265 clip 32", "x265", 10, 64)}, file=out)
    bars.finished("z", {"encode_s": 1.0})  # a job it does not know: ignored
    bars(Event("a", "encode", 0, 10))
    bars(Event("b", "encode", 5, 10))
    assert {r.slot for r in bars.running.values()} == {1, 2}
    bars(Event("a", "decode", 3, 10))
    bars.finished("a", {"encode_s": 2.0, "decode_s": 1.0, "metrics_s": 3.0})
    assert "a" not in bars.running
    bars(Event("b", "decode", 5, 10))  # later stages now known from job a
    bars(Event("a", "metrics", 1, 10))  # a late event of a finished job draws nothing
    assert "a" not in bars.running
    bars.close()
    text = out.getvalue()
    assert "x265 clip 37 encode" in text and "x265 clip 37 decode" in text
    assert "job ETA ?" in text  # before any job had finished, a later stage is unknown
    # job b's decode, half done, then its metrics at job a's pace: a number, not "?"
    assert re.search(r"x265 clip 32 decode.*job ETA \d\d:\d\d", text)


def test_a_quiet_sweep_draws_no_job_bars():
    out = io.StringIO()
    bars = JobBars({"a": ("x", "x", 1, 1)}, enabled=False, file=out)
    bars(Event("a", "encode", 0, 1))
    assert out.getvalue() == "" and not bars.running


def test_a_failing_sink_costs_the_progress_not_the_job():
    def broken(event):
        raise BrokenPipeError("the driver went away")

    with progress.sink(broken), progress.job("j"), progress.stage("encode", 3):
        progress.advance(3)  # no error reaches the job


def test_ffmpeg_ends_with_its_run_even_when_the_frame_source_fails(ffmpeg_exe, tmp_path):
    """The reader of ffmpeg's progress is joined and ffmpeg killed however run() ends, so no
    frame count of this encode lands in a later stage's bar."""
    from bench import ffmpeg

    def frames():
        yield bytes(64 * 64 * 3 // 2) * 2
        raise RuntimeError("the source went away")

    seen = []
    args = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "64x64", "-i", "-", "-c:v", "libx264", "-f", "h264", str(tmp_path / "o.264")]
    with progress.sink(seen.append), progress.job("j"), progress.stage("encode", 10):
        with pytest.raises(RuntimeError, match="source went away"):
            ffmpeg.run(ffmpeg_exe, args, log=tmp_path / "log", stdin_chunks=frames())
        assert not [t for t in threading.enumerate() if t.name != "MainThread" and t.is_alive() and "follow" in str(t)]
        count = len(seen)
        progress.reach(0)
    assert len(seen) == count  # nothing came after run() returned


@pytest.mark.parametrize(
    ("codec", "rate"),
    [("bmshj2018-hyperprior:random_weights_for_tests=true", "1"), ("diffsit", "1")],
)
def test_a_learned_codecs_frame_loops_report_each_frame(tmp_path, monkeypatch, codec, rate):
    """Learned codecs are the slow ones: their own frame loops advance the bar (Diff-SIT's
    two passes, STEM then ODFTE, each over every frame)."""
    from bench.codec import parse_codec_spec
    from bench.datasets import get_dataset
    from bench.jobs import run_job
    from bench.plan import plan

    name, options = parse_codec_spec(codec)
    job = plan(
        codecs=[(name, options)],
        dataset="synthetic",
        sequences=get_dataset("synthetic").resolve(None, ["testsrc2"]),
        rates=[rate],
        frames=3,
        metrics=["psnr"],
        device="cpu",
        out=tmp_path / "p",
    ).jobs[0]
    seen: list[Event] = []
    monkeypatch.setattr(progress, "MAX_RATE", 1e9)  # every frame's event, however fast
    with progress.sink(seen.append):
        rec = run_job(job).record
    assert rec["status"] == "done", rec.get("error")
    for stage in ("encode", "decode"):
        events = [e for e in seen if e.stage == stage]
        assert events[-1].done == events[-1].total >= 3
        assert len({e.done for e in events}) >= 3  # frame by frame, not 0 then all
