"""Peak memory of one job against its length (issue 35): a 1080p job must not hold its clip.

`pytest benchmarks/test_job_memory.py -s`: runs `bench run --codec x265 --rates 37 --jobs 1`
in a child process on 1080p clips of 96 and 600 frames (bigbuckbunny upscaled, looped) and
reports the child's peak RSS (``ru_maxrss``) with the default metric set. The frames are read
through the file mapping chunk by chunk and released (``Video.release``), so the peak is set by
the metrics' batch buffers, not by the frame count.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LIMIT_MB = 2048


@pytest.fixture(scope="module")
def clip_600(tmp_path_factory):
    from bench.datasets import DATASETS
    from bench.ffmpeg import ffmpeg_exe

    if not os.environ.get("BENCH_CACHE"):
        os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    src = {s.name: s for s in DATASETS["sample"].resolve(None)}["bigbuckbunny"].path
    out = tmp_path_factory.mktemp("clip") / "Long_1920x1080_25.yuv"
    args = ["-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "1280x720", "-stream_loop", "-1", "-i", str(src)]
    subprocess.run([ffmpeg_exe(), *args, "-vf", "scale=1920:1080", "-frames:v", "600", "-f", "rawvideo", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def _peak_rss_mb(clip, frames: int, out) -> float:
    """A fresh interpreter per measurement: ru_maxrss of RUSAGE_CHILDREN is the largest child's."""
    code = (
        "import resource, subprocess, sys; "
        f"r = subprocess.run([sys.executable, '-m', 'bench', 'run', '--codec', 'x265', '--rates', '37', '--jobs', '1', '--dataset', {str(clip)!r}, "
        f"'--frames', '{frames}', '--out', {str(out)!r}, '--quiet'], capture_output=True, text=True); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    rc, kb = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert rc == "0"
    return int(kb) / 1024


def _recorded_peak_mb(out) -> float:
    """What the job's record says of its own peak (bench.complexity.peak_memory_mb)."""
    from bench.store import ResultsStore

    (record,) = ResultsStore(out).jobs()
    return record.cost["peak_rss_mb"]


def test_peak_memory_does_not_grow_with_the_clip(clip_600, tmp_path, benchmark):
    peaks, recorded = {}, {}

    def both():
        for n in (96, 600):
            out = tmp_path / f"r{n}-{len(peaks)}"
            peaks[n] = _peak_rss_mb(clip_600, n, out)
            recorded[n] = _recorded_peak_mb(out)

    benchmark.pedantic(both, rounds=1, iterations=1)
    benchmark.extra_info.update({f"peak_rss_mb_{n}": round(v) for n, v in peaks.items()})
    print(f"\npeak RSS of one 1080p x265 job, default metrics: 96 frames {peaks[96]:.0f} MB, 600 frames {peaks[600]:.0f} MB")
    print(f"the jobs' records (the job's process alone): 96 frames {recorded[96]:.0f} MB, 600 frames {recorded[600]:.0f} MB")
    assert peaks[600] <= LIMIT_MB and peaks[600] <= 1.10 * peaks[96]
