"""Locating and running ffmpeg.

The default binary is the static ffmpeg inside the ``imageio-ffmpeg`` wheel, because it has
libx265, libvvenc, libsvtav1 and libvmaf, which distribution builds often lack. ``--ffmpeg``
or ``BENCH_FFMPEG`` name another. Every call passes an argument list, never a shell string,
so file names with spaces, quotes or ``;`` reach ffmpeg unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import children, progress

ENV_VAR = "BENCH_FFMPEG"


class FFmpegError(RuntimeError):
    """ffmpeg is missing, lacks a component, or failed; the message says what to do."""


def ffmpeg_exe(override: str | os.PathLike | None = None) -> str:
    """The ffmpeg to use: ``override``, then $BENCH_FFMPEG, then imageio-ffmpeg's binary."""
    name = override or os.environ.get(ENV_VAR)
    if name:
        found = shutil.which(str(name))
        if not found:
            raise FFmpegError(
                f"ffmpeg binary {name!r} (from {'--ffmpeg' if override else ENV_VAR}) does not exist "
                "or is not executable. Name a working ffmpeg with --ffmpeg PATH or BENCH_FFMPEG, "
                "or unset it to use the one inside the imageio-ffmpeg package."
            )
        return found
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise FFmpegError("no ffmpeg: install imageio-ffmpeg (pip install imageio-ffmpeg) or name a binary with --ffmpeg PATH / BENCH_FFMPEG") from e
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise FFmpegError(f"imageio-ffmpeg found no ffmpeg ({e}); name one with --ffmpeg PATH or BENCH_FFMPEG") from e


@functools.cache
def ffmpeg_version(exe: str) -> str:
    """First line of ``ffmpeg -version`` (recorded in every manifest)."""
    try:
        out = children.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise FFmpegError(f"cannot run ffmpeg {exe!r}: {e}. Name another with --ffmpeg PATH or BENCH_FFMPEG") from e
    return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"


@functools.cache
def _components(exe: str, kind: str) -> frozenset[str]:
    out = children.run([exe, "-hide_banner", f"-{kind}"], capture_output=True, text=True, timeout=60)
    names = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        # Listing rows are "<flags> <name> <description>"; flags are 6 chars for codecs,
        # 2-3 for filters.
        if len(parts) >= 2 and not parts[0].startswith("-") and parts[0] != "=":
            names.add(parts[1])
    return frozenset(names)


def has_encoder(exe: str, name: str) -> bool:
    return name in _components(exe, "encoders")


def has_decoder(exe: str, name: str) -> bool:
    return name in _components(exe, "decoders")


def has_filter(exe: str, name: str) -> bool:
    return name in _components(exe, "filters")


def missing_component_message(exe: str, kind: str, name: str) -> str:
    return (
        f"ffmpeg {exe} ({ffmpeg_version(exe)}) has no {kind} '{name}'. Name an ffmpeg built with it "
        f"with --ffmpeg PATH or BENCH_FFMPEG=PATH; the binary inside the imageio-ffmpeg wheel "
        f"(the default) has it."
    )


def tail(text: str | bytes, lines: int = 25) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.strip().splitlines()[-lines:])


def _feed(proc: subprocess.Popen, chunks: Iterable[bytes]) -> bool:
    """Write ``chunks`` to ffmpeg's stdin; True if ffmpeg stopped reading (its log says why)."""
    broken = False
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
    except BrokenPipeError:
        broken = True
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            broken = True
    return broken


def _follow_frames(stream) -> None:
    """ffmpeg's ``-progress`` lines: ``frame=N`` is the frames it has output so far. Reads to
    the end whatever happens, so ffmpeg never blocks on a full pipe."""
    for line in stream:
        if line.startswith(b"frame="):
            with contextlib.suppress(Exception):
                progress.reach(int(line[6:]))


def _stop(proc: subprocess.Popen | None, reader: threading.Thread | None) -> None:
    """However ``run`` ends (a timeout, a failing frame source, Ctrl-C), ffmpeg has ended and
    its progress reader with it: nothing reports into the next job's bar."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
        proc.wait() if reader is not None else proc.communicate()
    if reader is not None:
        reader.join()
        proc.stdout.close()


def run(
    exe: str,
    args: Sequence[str | os.PathLike],
    *,
    log: Path | None = None,
    stdin_chunks: Iterable[bytes] | None = None,
    timeout: float | None = None,
) -> None:
    """Run ffmpeg with an argument list; stderr goes to ``log`` (kept beside the bitstream).

    ``stdin_chunks`` streams raw frames in, so a 1080p source is never held whole in memory.
    """
    # a job's progress bar follows ffmpeg's own frame counter (it needs stdout, so only when
    # stderr goes to a log)
    follow = progress.active() and log is not None
    cmd = [exe, "-hide_banner", "-y", *(["-nostdin"] if stdin_chunks is None else []), *(["-progress", "pipe:1"] if follow else []), *map(str, args)]
    errf = open(log, "wb") if log is not None else None
    err, proc, reader = None, None, None
    try:
        proc = children.popen(
            cmd,
            stdin=subprocess.PIPE if stdin_chunks is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if follow else subprocess.DEVNULL,
            stderr=errf if errf is not None else subprocess.PIPE,
        )
        if follow:
            reader = threading.Thread(target=_follow_frames, args=(proc.stdout,), daemon=True)
            reader.start()
        broken = _feed(proc, stdin_chunks) if stdin_chunks is not None else False
        try:
            if reader is None:
                _, err = proc.communicate(timeout=timeout)
            else:
                proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FFmpegError(f"ffmpeg timed out after {timeout}s: {' '.join(map(str, cmd))}") from None
    finally:
        _stop(proc, reader)
        if errf is not None:
            errf.close()
    if proc.returncode != 0 or broken:
        text = log.read_bytes() if log is not None else (err or b"")
        raise FFmpegError(f"ffmpeg failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{tail(text)}")


# --- decoding, refusing damage ----------------------------------------------------------------

_LOG_ERROR = re.compile(r"\[(?:error|fatal|panic)\] ")
_IN_COUNTS = re.compile(r"Input stream #0:0 \(video\): (\d+) packets read[^;]*; (\d+) frames decoded(?:; (\d+) decode errors)?")
_OUT_COUNTS = re.compile(r"Output stream #0:0 \(video\): (\d+) frames encoded")


class StreamDamaged(FFmpegError):
    """The decoder found errors in a stream, or lost or added frames: its output is not the stream's."""


def decode(exe: str, decoder: str, demuxer: str, path: str | os.PathLike, out: Path, log: Path) -> None:
    """Decode an elementary stream to raw video in ``out``, refusing a damaged stream.

    ffmpeg conceals errors by default (a damaged stream still yields frames, and exit 0), so:
    the decoder aborts on any error it detects (``-err_detect explode``), ffmpeg exits on it
    (``-xerror``), every error line of the log fails the decode, and the frames decoded and
    written must equal the access units read. Damage a decoder cannot detect (a flipped bit
    that still parses) passes unless the stream carries picture hashes (HEVC/VVC hash SEI)."""
    # info, not verbose: at verbose the decoder threads' messages land inside the lines of the
    # stream dump the caller reads the format from (seen once in 36 decodes); the frame count
    # is checked against the stream's access units instead (check_frame_count)
    args = ["-v", "level+info", "-err_detect", "explode", "-c:v", decoder, "-f", demuxer, "-i", str(path), "-xerror", "-f", "rawvideo", str(out)]
    try:
        run(exe, args, log=log)
    except FFmpegError as e:
        raise StreamDamaged(_damage_message(path, demuxer, log, "ffmpeg stopped on an error")) from e
    text = log.read_text(errors="replace")
    if _LOG_ERROR.search(text):
        raise StreamDamaged(_damage_message(path, demuxer, log, "the decoder reported errors"))
    counts = _IN_COUNTS.search(text)
    written = _OUT_COUNTS.search(text)
    if counts:
        units, frames, errors = int(counts[1]), int(counts[2]), int(counts[3] or 0)
        out_frames = int(written[1]) if written else frames
        if errors or not units == frames == out_frames:
            raise StreamDamaged(
                _damage_message(path, demuxer, log, f"{units} access units read, {frames} frames decoded, {out_frames} written, {errors} decode errors")
            )


def check_frame_count(exe: str, path: str | os.PathLike, demuxer: str, frames: int, log: Path) -> None:
    """The frames a decode wrote must be the stream's access units: a stream cut short, or
    damage that drops pictures, decodes to fewer."""
    units = len(access_units(exe, path, demuxer))
    if frames != units:
        raise StreamDamaged(_damage_message(path, demuxer, log, f"{units} access units in the stream, {frames} frames decoded"))


def _damage_message(path: str | os.PathLike, demuxer: str, log: Path, what: str) -> str:
    text = log.read_text(errors="replace") if log.is_file() else ""
    errors = [line for line in text.splitlines() if _LOG_ERROR.search(line)][:5]
    quoted = "\n  ".join(errors) if errors else tail(text, 5)
    return (
        f"{path} does not decode cleanly: {what}. It is damaged or truncated (a copy cut short, bytes "
        f"changed on disk or in transit), or not a {demuxer} stream; encode it again. First errors from {log}:\n  {quoted}"
    )


# --- access units of an elementary stream ------------------------------------------------------

_TRACE = re.compile(r"^\[trace_headers @ [^\]]*\]\s+\d+\s+(\w+)(?:\[[^\]]*\])*\s+[01]*\s*=\s*(-?\d+)\s*$")
_PACKET = re.compile(r"^\[trace_headers @ [^\]]*\] Packet: (\d+) bytes")
# slice/frame type codes: HEVC and VVC (0 B, 1 P, 2 I), H.264 (mod 5: 0 P, 1 B, 2 I, 3 SP, 4 SI), AV1
_SLICE_TYPES = {"hevc": "BPI", "vvc": "BPI", "h264": "PBIPI"}
_AV1_TYPES = "IPIP"  # KEY, INTER, INTRA_ONLY, SWITCH


@dataclass
class AccessUnit:
    bytes: int
    type: str = ""
    qp: float = math.nan


def access_units(exe: str, path: str | os.PathLike, demuxer: str) -> list[AccessUnit]:
    """Each access unit of an elementary stream (``hevc``, ``vvc``, ``h264``, ``ivf``), in
    decoding order: its bytes, its picture type and its slice QP, read from the stream's own
    headers by ffmpeg's ``trace_headers`` bitstream filter (no decoding). A picture's type and
    QP are those of its first slice."""
    out = children.run(
        [exe, "-hide_banner", "-nostdin", "-f", demuxer, "-i", str(path), "-map", "0:v:0", "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        raise FFmpegError(f"ffmpeg could not read the access units of {path}: {tail(out.stderr)}")
    family = {"ivf": "av1", "obu": "av1"}.get(demuxer, demuxer)
    units: list[AccessUnit] = []
    init_qp = 26
    slice_seen = False
    for line in out.stderr.splitlines():
        m = _PACKET.match(line)
        if m:
            units.append(AccessUnit(int(m.group(1))))
            slice_seen = False
            continue
        m = _TRACE.match(line)
        if not m:
            continue
        name, value = m.group(1), int(m.group(2))
        if name in ("init_qp_minus26", "pps_init_qp_minus26", "pic_init_qp_minus26"):
            init_qp = 26 + value
        if not units or slice_seen and name not in ("slice_qp_delta", "sh_qp_delta", "ph_qp_delta"):
            continue
        unit = units[-1]
        if family in _SLICE_TYPES and name in ("slice_type", "sh_slice_type"):
            unit.type = _SLICE_TYPES[family][value % len(_SLICE_TYPES[family])]
        elif family == "vvc" and name == "ph_inter_slice_allowed_flag" and value == 0:
            unit.type = "I"
        elif family == "av1" and name == "frame_type" and not unit.type:
            unit.type = _AV1_TYPES[value]
        elif family == "av1" and name == "base_q_idx" and math.isnan(unit.qp):
            unit.qp = value
        elif name in ("slice_qp_delta", "sh_qp_delta", "ph_qp_delta") and math.isnan(unit.qp):
            unit.qp = init_qp + value
            slice_seen = True
    return units
