"""HM and VTM, the reference encoders, driven through the user's own binaries.

``hm`` runs ``TAppEncoder``/``TAppDecoder`` (HM-16.x), ``vtm`` runs ``EncoderApp``/``DecoderApp``
(VTM). Neither ships with any Python package, so they are looked for in ``hm_dir``/``vtm_dir``
(the source tree: ``bin/`` and ``cfg/``; ``--hm-dir``/``--vtm-dir`` on the command line) or
on PATH. The configuration is the tree's low-delay file (HM: ``cfg/encoder_lowdelay_main10.cfg``,
VTM: ``cfg/encoder_lowdelay_vtm.cfg``) or the ``cfg`` option; for binaries on PATH, ``cfg/`` is
looked for in the folders above the binary (their CMake builds put it in
``TREE/bin/umake/gcc-12.2/x86_64/release/``, five below the tree).

The intra period must suit the configuration's GOP: with IDR refresh both encoders take only
-1 or a multiple of GOPSize above it (16, 24, ... for the low-delay GOP of 8), and ``check()``
refuses any other at plan time, listing those. The GOP is not changed to fit: it is the test
condition (the published anchors use it), and a GOP table cannot be derived from another.
The encoder's version, read from its banner, is part of ``describe()`` and so of the job's
identity: a rebuilt encoder of another version does not serve the old one's results.

The command line follows DCVC's test conditions (docs/architecture.md, "Anchors")::

    TAppEncoder -c encoder_lowdelay_main10.cfg --InputFile=in.yuv --BitstreamFile=out.bin
        --DecodingRefreshType=2 --InputBitDepth=8 --OutputBitDepth=8 --OutputBitDepthC=8
        --InputChromaFormat=420 --FrameRate=50 --FramesToBeEncoded=96 --SourceWidth=1920
        --SourceHeight=1080 --IntraPeriod=-1 --QP=37 --Level=6.2 --ReconFile=rec.yuv

(``--ReconFile`` added: the harness checks the decoder against it). Input and output bit
depths are the source's (8 or 10; the main10 configuration codes both at 10 bits inside). The
encoder's log is kept beside the bitstream as ``<bitstream>.enc.log``; a failure quotes its
tail. The decoder runs ``-b out.bin -o dec.yuv -d N`` (N the depth asked for, 0 the stream's
own). The picture size, each access unit's bytes, picture type and slice QP are read back
with ffmpeg's parser, so decoding needs only the file. A failed encoder or decoder raises
:class:`~bench.codec.ToolFailed` carrying its log, for the store (the scratch folder goes).
HM's and VTM's ``--FrameRate`` is an integer: 29.97 fps is passed as 30 (only rate control,
which fixed-QP coding does not use, reads it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from bench import children, ffmpeg
from bench.codec import Codec, CodecError, CodecOption, EncodeResult, Rate, RateSpec, Requirement, ToolFailed, check_intra_period
from bench.store import file_digest
from bench.video import Video, read_yuv, write_yuv

_GEOMETRY = re.compile(r"Stream #0:0.*?Video: (?:hevc|vvc)[^,]*, ([a-z0-9]+)[^,]*, (\d+)x(\d+)")
_FPS = re.compile(r"Stream #0:0.*?Video:.*?, (\d+(?:\.\d+)?) fps")
# the banner both print first: "HM software: Encoder Version [16.23]", "VTM Encoder Version 17.0"
_VERSION = re.compile(r"(?:Encoder|Decoder) Version \[?(\d[\w.+-]*)")
_GOP_SIZE = re.compile(r"^\s*GOPSize\s*:\s*(\d+)", re.M)
#: folders looked in for cfg/, from the binary's own up: CMake builds put the binaries in
#: TREE/bin/umake/gcc-12.2/x86_64/release/ (TREE is 5 up), make builds in TREE/bin/ (1 up)
CFG_LEVELS = 7


class ReferenceEncoder(Codec):
    encoder_names: ClassVar[tuple[str, ...]]
    decoder_names: ClassVar[tuple[str, ...]]
    default_cfg: ClassVar[str]
    dir_option: ClassVar[str]
    muxer: ClassVar[str]  # ffmpeg's raw elementary-stream demuxer, to read the picture size back
    rate_spec = RateSpec("int", 0, 51)
    default_rates = (27, 32, 37, 42, 47)
    extension = ".bin"
    bit_depths = (8, 10)
    location_options = ("cfg",)

    def __init__(self, *, root: str | None = None, cfg: str | None = None, intra_period: int = -1, level: str = "6.2", ffmpeg: str | None = None):
        check_intra_period(intra_period)
        self.root = Path(root).expanduser() if root else None
        self.cfg = Path(cfg).expanduser() if cfg else None
        self.intra_period = intra_period
        self.level = str(level)
        self.ffmpeg = ffmpeg

    # --- finding the binaries and the cfg -----------------------------------------------------

    def _find(self, names: tuple[str, ...]) -> Path | None:
        if self.root is not None:
            for sub in ("bin", "."):
                for name in names:
                    p = self.root / sub / name
                    if p.is_file() and os.access(p, os.X_OK):
                        return p
            # HM/VTM's cmake/make builds put them deeper: bin/umake/gcc-*/x86_64/release/
            for name in names:
                for p in sorted((self.root / "bin").rglob(name)) if (self.root / "bin").is_dir() else []:
                    if p.is_file() and os.access(p, os.X_OK):
                        return p
            return None
        for name in names:
            found = shutil.which(name)
            if found:
                return Path(found)
        return None

    def _cfg_path(self) -> Path | None:
        if self.cfg is not None:
            return self.cfg if self.cfg.is_file() else None
        for folder in self._cfg_folders():
            p = folder / "cfg" / self.default_cfg
            if p.is_file():
                return p
        return None

    def _cfg_folders(self) -> list[Path]:
        """Where cfg/ may be: the tree given, else the tree the encoder on PATH was built in,
        some folders up (bounded: a stray cfg/ far above is not the binary's)."""
        if self.root is not None:
            return [self.root]
        exe = self._find(self.encoder_names)
        if exe is None:
            return []
        # a symlink on PATH (~/bin/TAppEncoder): the tree is above its target
        starts = dict.fromkeys([exe.parent, exe.resolve().parent])
        return [folder for start in starts for folder in [start, *start.parents][:CFG_LEVELS]]

    def requirements(self) -> list[Requirement]:
        where = f"{self.root}/bin" if self.root else "PATH"
        how = f"build {self.label} and pass {self.dir_option}=PATH/TO/{self.label} (its source tree), or put its bin/ on PATH"
        reqs = []
        for kind, names in (("encoder", self.encoder_names), ("decoder", self.decoder_names)):
            exe = self._find(names)
            reqs.append(Requirement(f"{self.label} {kind} ({' or '.join(names)})", exe is not None, str(exe) if exe else where, how))
        cfg = self._cfg_path()
        looked = str(self.cfg) if self.cfg else (f"{self.root}/cfg" if self.root else self._cfg_looked())
        reqs.append(
            Requirement(
                f"{self.label} low-delay configuration {self.cfg.name if self.cfg else self.default_cfg}",
                cfg is not None,
                str(cfg) if cfg else looked,
                f"pass {self.dir_option}=TREE (with cfg/{self.default_cfg}) or cfg=FILE",
            )
        )
        return reqs

    def _cfg_looked(self) -> str:
        folders = self._cfg_folders()
        if not folders:
            return "cfg/ above the encoder, which was not found"
        return f"cfg/ in {folders[0]} and the {CFG_LEVELS - 1} folders above it"

    def check(self) -> None:
        """What the base class checks, and that the intra period suits the cfg's GOP: the
        encoder would refuse it only when run, after the whole sweep was planned."""
        super().check()
        cfg = self._cfg_path()
        gop = gop_size(cfg)
        p = self.intra_period
        if p != -1 and (p <= gop or p % gop):
            valid = ", ".join(str(gop * k) for k in (2, 3, 4))
            raise ValueError(
                f"intra_period {p} does not fit the GOP of {cfg} (GOPSize {gop}): with IDR refresh "
                f"{self.label} takes -1 (one intra frame) or a multiple of the GOP size {gop} above {gop}: -1, {valid}, ...; "
                f"pass one of those (--intra-period {2 * gop}), or cfg=FILE with another GOPSize"
            )

    @property
    def label(self) -> str:
        return self.name.upper()

    # --- protocol ------------------------------------------------------------------------------

    def encoder_command(self, exe: Path, cfg: Path, video: Video, qp: int, yuv: Path, out: Path, recon: Path) -> list[str]:
        return [
            str(exe),
            "-c",
            str(cfg),
            f"--InputFile={yuv}",
            f"--BitstreamFile={out}",
            "--DecodingRefreshType=2",
            f"--InputBitDepth={video.bit_depth}",
            f"--OutputBitDepth={video.bit_depth}",
            f"--OutputBitDepthC={video.bit_depth}",
            "--InputChromaFormat=420",
            f"--FrameRate={max(1, round(video.fps))}",
            f"--FramesToBeEncoded={video.frames}",
            f"--SourceWidth={video.width}",
            f"--SourceHeight={video.height}",
            f"--IntraPeriod={self.intra_period}",
            f"--QP={qp}",
            f"--Level={self.level}",
            f"--ReconFile={recon}",
        ]

    def encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        qp = self.parse_rate(rate)
        self.check()
        exe, cfg = self._find(self.encoder_names), self._cfg_path()
        workdir = Path(workdir)
        out = workdir / f"{self.name}_qp{qp}{self.extension}"
        yuv, recon = workdir / f"{self.name}_qp{qp}.input.yuv", workdir / f"{self.name}_qp{qp}.recon.yuv"
        write_yuv(video, yuv)
        cmd = self.encoder_command(exe, cfg, video, qp, yuv, out, recon)
        log = out.with_name(out.name + ".enc.log")
        try:
            _run(cmd, log, f"{self.label} encoder", "enc.log")
        finally:
            yuv.unlink(missing_ok=True)
        if not out.is_file() or out.stat().st_size == 0:
            raise _failed(f"{self.label} encoder exited 0 but wrote no bitstream to {out.name}", log, "enc.log")
        rec = read_yuv(recon, video.width, video.height, bit_depth=video.bit_depth, fps=video.fps) if recon.is_file() else None
        units = ffmpeg.access_units(ffmpeg.ffmpeg_exe(self.ffmpeg), out, self.muxer)
        return EncodeResult(
            out,
            frame_bytes=[u.bytes for u in units],
            frame_types=[u.type for u in units],
            frame_qps=[u.qp for u in units],
            reconstruction=rec.copy() if rec is not None else None,
            logs=[log],
            command=cmd,
            tools={"encoder": str(exe), "cfg": str(cfg)},
        )

    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        path = Path(path)
        exe = self._find(self.decoder_names)
        if exe is None:
            self.check()
        out = Path(workdir) / f"{path.stem}.decoded.yuv"
        width, height, fps, native = self._geometry(path)
        depth = bit_depth or native
        log = Path(workdir) / f"{path.name}.dec.log"
        _run([str(exe), "-b", str(path), "-o", str(out), "-d", str(depth)], log, f"{self.label} decoder", "dec.log")
        # a lost picture does not always fail the decoder: count what it wrote against the stream
        units = len(ffmpeg.access_units(ffmpeg.ffmpeg_exe(self.ffmpeg), path, self.muxer))
        video = read_yuv(out, width, height, bit_depth=depth, fps=fps) if out.is_file() else None
        if video is None or video.frames != units:
            raise _failed(
                f"{self.label} decoder wrote {video.frames if video else 'no'} pictures from the {units} access units of {path.name}: "
                "the stream is damaged or truncated; encode it again",
                log,
                "dec.log",
            )
        return video

    def _geometry(self, path: Path) -> tuple[int, int, float, int]:
        """Width, height, frame rate and coded bit depth, from the stream's parameter sets."""
        exe = ffmpeg.ffmpeg_exe(self.ffmpeg)
        probe = children.run([exe, "-hide_banner", "-nostdin", "-f", self.muxer, "-i", str(path)], capture_output=True, text=True, timeout=120)
        m = _GEOMETRY.search(probe.stderr)
        if not m:
            raise CodecError(f"{self.name}: cannot read the picture size of {path} with ffmpeg's {self.muxer} parser: {ffmpeg.tail(probe.stderr)}")
        fps = _FPS.search(probe.stderr)
        depth = 10 if "10" in m.group(1) else 8
        return int(m.group(2)), int(m.group(3)), float(fps.group(1)) if fps else 25.0, depth

    def identity(self) -> dict[str, Any]:
        """The binaries' versions, the cfg's contents as well as its path (a cfg edited in place
        codes differently), the intra period and level."""
        cfg = self._cfg_path()
        return {**self.describe(), "cfg_sha256": file_digest(cfg) if cfg else None}

    def describe(self) -> dict[str, Any]:
        enc, dec = self._find(self.encoder_names), self._find(self.decoder_names)
        return {
            **super().describe(),
            "encoder": str(enc) if enc else None,
            "encoder_version": tool_version(enc) if enc else None,
            "decoder": str(dec) if dec else None,
            "decoder_version": tool_version(dec) if dec else None,
            "cfg": str(self._cfg_path()) if self._cfg_path() else None,
            "intra_period": self.intra_period,
            "level": self.level,
        }


def _run(cmd: list[str], log: Path, what: str, suffix: str) -> None:
    try:
        with open(log, "w") as f:
            proc = children.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise CodecError(f"{what} could not start ({cmd[0]}): {e}") from e
    if proc.returncode != 0:
        raise _failed(f"{what} failed (exit {proc.returncode})", log, suffix)


def _failed(summary: str, log: Path, suffix: str) -> ToolFailed:
    """The error for a tool that failed, carrying its whole log (the scratch folder it is in
    goes with the job: the harness keeps the log as bitstreams/<job id>.<suffix>)."""
    data = log.read_bytes() if log.is_file() else b""
    tail = "\n".join(data.decode(errors="replace").splitlines()[-15:])
    return ToolFailed(summary, {suffix: data}, where=str(log), detail=tail)


def gop_size(cfg: Path) -> int:
    """The cfg's GOPSize: the last one, as HM's and VTM's parsers take it; 1, their default,
    if it sets none."""
    sizes = _GOP_SIZE.findall(cfg.read_text(errors="replace"))
    return int(sizes[-1]) if sizes else 1


_versions: dict[tuple[str, int, int], str | None] = {}


def tool_version(exe: Path) -> str | None:
    """The version in the banner HM/VTM print before anything else (None if it has none),
    asked once per binary (path, mtime, size): describe() runs for every job, and a rebuilt
    binary is asked again."""
    st = exe.stat()
    key = (str(exe), st.st_mtime_ns, st.st_size)
    if key not in _versions:
        try:  # --help: both print the banner, then their options, and exit without coding
            proc = children.run([str(exe), "--help"], capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
            m = _VERSION.search(proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace"))
        except (OSError, subprocess.TimeoutExpired):
            m = None
        _versions[key] = m.group(1) if m else None
    return _versions[key]


class HM(ReferenceEncoder):
    """HEVC reference encoder HM-16.x (the paper's HM16.25), low delay, main10."""

    @classmethod
    def options(cls) -> list[CodecOption]:
        return [CodecOption("--hm-dir", "hm_dir", "HM source tree (bin/TAppEncoder, cfg/encoder_lowdelay_main10.cfg) for --codec hm (default: PATH)")]

    name = "hm"
    anchor = True
    encoder_names = ("TAppEncoder", "TAppEncoderStatic")
    decoder_names = ("TAppDecoder", "TAppDecoderStatic")
    default_cfg = "encoder_lowdelay_main10.cfg"
    dir_option = "hm_dir"
    muxer = "hevc"

    def __init__(self, *, hm_dir: str | None = None, cfg: str | None = None, intra_period: int = -1, level: str = "6.2", ffmpeg: str | None = None):
        super().__init__(root=hm_dir, cfg=cfg, intra_period=intra_period, level=level, ffmpeg=ffmpeg)


class VTM(ReferenceEncoder):
    """VVC reference encoder VTM (the paper's VTM17.0), low delay."""

    @classmethod
    def options(cls) -> list[CodecOption]:
        return [CodecOption("--vtm-dir", "vtm_dir", "VTM source tree (bin/EncoderApp, cfg/encoder_lowdelay_vtm.cfg) for --codec vtm (default: PATH)")]

    name = "vtm"
    anchor = True
    encoder_names = ("EncoderApp", "EncoderAppStatic")
    decoder_names = ("DecoderApp", "DecoderAppStatic")
    default_cfg = "encoder_lowdelay_vtm.cfg"
    dir_option = "vtm_dir"
    muxer = "vvc"
    rate_spec = RateSpec("int", 0, 63)

    def __init__(self, *, vtm_dir: str | None = None, cfg: str | None = None, intra_period: int = -1, level: str = "6.2", ffmpeg: str | None = None):
        super().__init__(root=vtm_dir, cfg=cfg, intra_period=intra_period, level=level, ffmpeg=ffmpeg)
