"""Locating and running ffmpeg.

The default binary is the static ffmpeg inside the ``imageio-ffmpeg`` wheel, because it has
libx265, libvvenc, libsvtav1 and libvmaf, which distribution builds often lack. ``--ffmpeg``
or ``BENCH_FFMPEG`` name another. Every call passes an argument list, never a shell string,
so file names with spaces, quotes or ``;`` reach ffmpeg unchanged.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

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
        raise FFmpegError(
            "no ffmpeg: install imageio-ffmpeg (pip install imageio-ffmpeg) or name a binary with "
            "--ffmpeg PATH / BENCH_FFMPEG"
        ) from e
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise FFmpegError(f"imageio-ffmpeg found no ffmpeg ({e}); name one with --ffmpeg PATH or BENCH_FFMPEG") from e


@functools.cache
def ffmpeg_version(exe: str) -> str:
    """First line of ``ffmpeg -version`` (recorded in every manifest)."""
    try:
        out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise FFmpegError(f"cannot run ffmpeg {exe!r}: {e}. Name another with --ffmpeg PATH or BENCH_FFMPEG") from e
    return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"


@functools.cache
def _components(exe: str, kind: str) -> frozenset[str]:
    out = subprocess.run([exe, "-hide_banner", f"-{kind}"], capture_output=True, text=True, timeout=60)
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
    cmd = [exe, "-hide_banner", "-y", *(["-nostdin"] if stdin_chunks is None else []), *map(str, args)]
    errf = open(log, "wb") if log is not None else None
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin_chunks is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errf if errf is not None else subprocess.PIPE,
        )
        broken = False
        if stdin_chunks is not None:
            try:
                for chunk in stdin_chunks:
                    proc.stdin.write(chunk)
            except BrokenPipeError:
                broken = True  # ffmpeg exited early; its stderr says why
            finally:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    broken = True
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise FFmpegError(f"ffmpeg timed out after {timeout}s: {' '.join(map(str, cmd))}") from None
    finally:
        if errf is not None:
            errf.close()
    if proc.returncode != 0 or broken:
        text = log.read_bytes() if log is not None else (err or b"")
        raise FFmpegError(
            f"ffmpeg failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{tail(text)}"
        )
