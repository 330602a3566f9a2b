"""What a killed job, a mislabelled input and a damaged stream leave behind (issue 30).

- a job killed with kill -9 leaves its scratch folder: the next run on the machine removes
  it, and never a live job's;
- a killed driver or worker takes its encoder with it;
- an 8-bit file run as --bit-depth 10 is refused, naming the file, the frame and the value;
- a damaged stream is refused by the decoder, never measured as garbage.

Everything runs the real ffmpeg and real processes, killed for real.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench import scratch
from bench.codec import CodecError, create_codec
from bench.video import SampleRangeError, read_yuv

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **kwargs) -> subprocess.Popen:
    """A Python child running ``code`` with this checkout importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True, **kwargs)


def _alive(pid: int) -> bool:
    """Running (a zombie is dead: nobody may be reaping orphans in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def _ffmpeg_writing(out: str) -> int | None:
    """The running ffmpeg whose command line names ``out`` (a path unique to the test)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if Path(argv[0]).name.startswith("ffmpeg") and out in argv and _alive(int(d.name)):
                return int(d.name)
    return None


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with its MD5 (folders as "dir")."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.md5(p.read_bytes()).hexdigest()
    return out


# --- 1. scratch of a killed job ---------------------------------------------------------------

_HOLD = """
import time
from bench import scratch
with scratch.job_dir({job!r}) as d:
    (d / "decoded.yuv").write_bytes(b"x" * 4096)
    print(d, flush=True)
    time.sleep(120)
"""


def test_stale_folder_of_a_killed_job_is_removed_by_the_next_run_and_a_live_one_kept(tmp_path, monkeypatch):
    work = tmp_path / "work"
    monkeypatch.setenv("BENCH_WORKDIR", str(work))
    dead, live = (_python(_HOLD.format(job=n)) for n in ("dead-job", "live-job"))
    try:
        dead_dir, live_dir = Path(dead.stdout.readline().strip()), Path(live.stdout.readline().strip())
        assert dead_dir.parent == work and dead_dir.name.startswith(f".work-dead-job.{scratch._host()}.{dead.pid}.")
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=30)
        assert (dead_dir / "decoded.yuv").is_file()  # a kill runs no cleanup
        # both past the grace period: what keeps the live one is its owner's lock
        old = time.time() - 10 * scratch.GRACE_S
        for d in (dead_dir, live_dir):
            os.utime(d, (old, old))
        other_host = work / f".work-x265-a.other-node.{dead.pid}.abcd1234"  # not ours to judge
        other_host.mkdir()
        os.utime(other_host, (old, old))
        (work / "notes.txt").write_text("not scratch\n")
        before = _tree(work)

        from bench.cli import main

        out = tmp_path / "results"
        rc = main(
            [
                *("run", "--codec", "x264:preset=ultrafast", "--dataset", "synthetic", "--sequences", "testsrc2"),
                *("--frames", "2", "--rates", "37", "--metrics", "psnr", "--out", str(out), "--quiet"),
            ]
        )
        assert rc == 0 and len(list((out / "jobs").glob("*.json"))) == 1
        after = _tree(work)
        assert not dead_dir.exists()
        assert after == {k: v for k, v in before.items() if not k.startswith(dead_dir.name)}  # the run's own folder is gone too
        assert live.poll() is None and (live_dir / "decoded.yuv").is_file()
    finally:
        for p in (dead, live):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    # its owner gone, the live one is stale too
    os.utime(live_dir, (old, old))
    assert scratch.remove_stale(work) == [live_dir] and not live_dir.exists()


def test_a_young_unlocked_folder_is_left_to_its_owner(tmp_path):
    # its owner may be between mkdtemp and flock
    young = tmp_path / f".work-j.{scratch._host()}.{os.getpid() + 1}.abcd1234"
    young.mkdir()
    assert scratch.remove_stale(tmp_path) == [] and young.is_dir()


# --- 2. the encoder dies with whoever started it ----------------------------------------------

_ENCODE = """
from bench import ffmpeg
ffmpeg.run(ffmpeg.ffmpeg_exe(), ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "3600", "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", {out!r}])
"""


def test_a_killed_job_takes_its_encoder_with_it(tmp_path):
    out = str(tmp_path / "long.264")
    job = _python(_ENCODE.format(out=out))
    try:
        encoder = _wait(lambda: _ffmpeg_writing(out), 60, "the encoder started")
        assert _parent(encoder) == job.pid
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
        _wait(lambda: not _alive(encoder), 10, f"encoder {encoder} gone after its parent was killed")
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=30)


_DRIVER = """
import concurrent.futures as cf, multiprocessing
from bench import children, ffmpeg
args = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "3600", "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", {out!r}]
if __name__ == "__main__":
    pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=children.die_with_pool_parent)
    pool.submit(ffmpeg.run, ffmpeg.ffmpeg_exe(), args).result()
"""


def _killed_driver_leaves_nothing(tmp_path, driver_code: str) -> tuple[int, int]:
    """Start ``driver_code`` (formatted with the output path) until its worker's encoder
    writes, kill -9 the driver, and check the worker and encoder end; the pids of the driver
    and of the worker's parent."""
    out = str(tmp_path / "long.264")
    script = tmp_path / "driver.py"
    script.write_text(driver_code.format(out=out))
    driver = _python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    try:
        encoder = _wait(lambda: _ffmpeg_writing(out), 90, "the worker's encoder started")
        worker = _parent(encoder)
        assert worker != driver.pid and _alive(worker)
        server = _parent(worker)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        _wait(lambda: not _alive(worker) and not _alive(encoder), 20, "worker and encoder gone after the driver was killed")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
    return driver.pid, server


def test_a_killed_driver_takes_its_pool_worker_and_the_workers_encoder(tmp_path):
    _killed_driver_leaves_nothing(tmp_path, _DRIVER)


_POOL_DRIVER = """
from bench import ffmpeg
from bench.executors.base import worker_init
from bench.executors.pool import WorkerPool
args = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "3600", "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", {out!r}]
def encode(_):
    ffmpeg.run(ffmpeg.ffmpeg_exe(), args)
if __name__ == "__main__":
    pool = WorkerPool(1, worker_init, (1,))
    list(pool.run(encode, [0]))
"""


def test_a_killed_driver_takes_its_fork_server_worker_and_its_encoder(tmp_path):
    """The sweep's own pool forks its workers from a fork server: the worker's parent is the
    server, which lives while its workers do, so the worker watches the driver itself."""
    from bench.executors.pool import context

    driver, worker_parent = _killed_driver_leaves_nothing(tmp_path, _POOL_DRIVER)
    if context().get_start_method() == "forkserver":
        assert worker_parent != driver


# --- 3. an input that is not what it claims ---------------------------------------------------


def _eight_bit_clip(ffmpeg_exe, path: Path, frames: int = 4) -> Path:
    subprocess.run(
        [
            ffmpeg_exe,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=352x288:rate=25",
            "-frames:v",
            str(frames),
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
            str(path),
        ],
        check=True,
    )
    return path


def test_an_8_bit_file_run_as_10_bit_is_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys, ffmpeg_exe):
    from bench.cli import main

    (tmp_path / "data").mkdir()
    src = _eight_bit_clip(ffmpeg_exe, tmp_path / "data" / "clip_352x288_25.yuv")
    monkeypatch.setenv("BENCH_WORKDIR", str(tmp_path / "work"))
    before = _tree(tmp_path)
    out = tmp_path / "results"
    rc = main(["run", "--codec", "x264", "--dataset", str(src), "--bit-depth", "10", "--frames", "2", "--metrics", "psnr", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{src}: frame 0 holds the value " in err and "above 1023" in err and "An 8-bit file read as --bit-depth 10?" in err
    assert _tree(tmp_path) == before and not out.exists()


def test_a_later_frame_out_of_range_fails_the_job_never_done(tmp_path, monkeypatch, ffmpeg_exe):
    from bench.config import SweepConfig
    from bench.sweep import run_sweep

    # valid 10-bit frames, then one whose word 7 of its V plane is 0xFFFF
    clip = tmp_path / "clip_352x288_25_10bit.yuv"
    ten = np.frombuffer(_eight_bit_clip(ffmpeg_exe, tmp_path / "eight.yuv", 3).read_bytes(), np.uint8).astype("<u2") << 2
    ten = ten.reshape(3, -1)
    ten[2, -7] = 0xFFFF
    clip.write_bytes(ten.tobytes())
    with pytest.raises(SampleRangeError, match=r"frame 2 holds the value 65535 in its V plane, above 1023"):
        read_yuv(clip, 352, 288, bit_depth=10)
    np.testing.assert_array_equal(read_yuv(clip, 352, 288, bit_depth=10, frames=2).y[1], ten[1, : 352 * 288].reshape(288, 352))

    monkeypatch.setenv("BENCH_WORKDIR", str(tmp_path / "work"))
    out = tmp_path / "results"
    result = run_sweep(SweepConfig(codecs=["x264:preset=ultrafast"], dataset=str(clip), frames=3, rates=["37"], metrics=["psnr"], out=str(out), progress=False))
    (record,) = result.parts[0].records
    assert record["status"] == "failed" and "frame 2 holds the value 65535" in record["error"]
    assert result.summary().empty and not any((out / "bitstreams").iterdir())
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


# --- 4. a damaged stream ----------------------------------------------------------------------


def _damage(path: Path, to: Path) -> Path:
    """Bytes of the middle tenth of the stream changed, as a bad copy would."""
    data = bytearray(path.read_bytes())
    for i in range(int(len(data) * 0.45), int(len(data) * 0.55), 7):
        data[i] ^= 0x5A
    to.write_bytes(bytes(data))
    return to


def test_a_damaged_x265_stream_is_refused(tmp_path, synthetic):
    codec = create_codec("x265", preset="ultrafast")
    ref = synthetic["testsrc2"].open(frames=9)
    clean = codec.encode(ref, 32, tmp_path).bitstream
    assert codec.decode(clean, tmp_path, bit_depth=8).frames == 9
    bad = _damage(clean, tmp_path / "damaged.hevc")
    before = _tree(tmp_path)
    with pytest.raises(CodecError) as e:
        codec.decode(bad, tmp_path, bit_depth=8)
    msg = str(e.value)
    assert msg.startswith(f"x265: {bad} does not decode cleanly") and "damaged or truncated" in msg
    assert "[error]" in msg.splitlines()[1]  # the decoder's own first error, quoted
    written = set(_tree(tmp_path)) - set(before)
    assert written <= {"damaged.decoded.yuv", "damaged.hevc.dec.log"} and {k: v for k, v in _tree(tmp_path).items() if k in before} == before


def test_a_damaged_stream_that_loses_pictures_is_refused_by_the_hm_wrapper(tmp_path, synthetic):
    sys.path.insert(0, str(ROOT / "tests" / "fakes"))
    from reference_tree import make_tree

    codec = create_codec("hm", hm_dir=str(make_tree(tmp_path / "HM", "hm")))
    clean = codec.encode(synthetic["testsrc2"].open(frames=9), 32, tmp_path).bitstream
    bad = _damage(clean, tmp_path / "damaged.bin")
    with pytest.raises(CodecError, match=r"HM decoder wrote \d pictures from the \d access units of .*damaged.bin: the stream is damaged or truncated"):
        codec.decode(bad, tmp_path, bit_depth=8)


def test_a_decode_that_loses_a_frame_without_an_error_line_is_refused(tmp_path):
    from bench import ffmpeg

    # what ffmpeg logs when its decoder drops a picture quietly (its own counts, exit 0)
    quiet = tmp_path / "ffmpeg"
    quiet.write_text(
        "#!/bin/sh\necho '[in#0/hevc @ 0x1] [verbose]   Input stream #0:0 (video): 9 packets read (16659 bytes); 8 frames decoded; 0 decode errors; ' >&2\n"
    )
    quiet.chmod(0o755)
    stream = tmp_path / "s.hevc"
    stream.write_bytes(b"\0\0\1")
    with pytest.raises(ffmpeg.StreamDamaged, match=r"does not decode cleanly: 9 access units read, 8 frames decoded, 8 written, 0 decode errors"):
        ffmpeg.decode(str(quiet), "hevc", "hevc", stream, tmp_path / "out.yuv", tmp_path / "dec.log")
