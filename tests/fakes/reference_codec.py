"""FAKE HM/VTM executables for tests: they follow the reference software's command-line
contract (TAppEncoder/EncoderApp ``-c CFG --Key=Value ...``; TAppDecoder/DecoderApp ``-b -o -d``)
but code with ffmpeg (libx265 for HM, libvvenc for VTM), so they write real HEVC/VVC streams.

Installed by the tests as ``TAppEncoder`` etc. (the role comes from the file name). Each call
appends its argv to ``$FAKE_REFERENCE_LOG`` (JSON lines); ``$FAKE_REFERENCE_FAIL`` makes the
encoder fail the way HM does on a bad option.

Like the real ones, they print their version banner first (``--help``: the banner only, exit
1), read GOPSize, IntraPeriod and DecodingRefreshType from the cfg (the command line wins)
and refuse, with HM's message, an intra period the GOP cannot honour: no fake may accept what
the real encoder refuses. The intra period is passed on to x265 (an I frame every N).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg

ROLE = Path(sys.argv[0]).name
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def log():
    path = os.environ.get("FAKE_REFERENCE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"role": ROLE, "argv": sys.argv[1:]}) + "\n")


def banner():
    """The line HM/VTM print first, whatever the arguments (the plugin reads the version in it)."""
    vvc = ROLE.startswith(("Encoder", "Decoder"))
    what = "Encoder" if "Encoder" in ROLE else "Decoder"
    print(f"VVCSoftware: VTM {what} Version 17.0 [Linux]" if vvc else f"HM software: {what} Version [16.23] (including RExt)", flush=True)


def read_cfg(path):
    """The cfg's ``Key : value`` lines, as HM's parser reads them (comments after #)."""
    cfg = {}
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.split("#", 1)[0].partition(":")
        if sep and key.strip() and value.split():
            cfg[key.strip()] = value.split()[0]
    return cfg


def check_intra_period(opts):
    """HM's and VTM's own checks (TAppEncCfg.cpp / EncAppCfg.cpp xConfirmPara), same messages."""
    period, gop, refresh = int(opts.get("IntraPeriod", -1)), int(opts.get("GOPSize", 1)), int(opts.get("DecodingRefreshType", 0))
    errors = []
    if (period > 0 and period < gop) or period == 0:
        errors.append("Intra period must be more than GOP size, or -1 , not 0")
    if refresh == 2 and period > 0 and period <= gop:
        errors.append("Intra period must be larger than GOP size for periodic IDR pictures")
    if period >= 0 and period % gop != 0:
        errors.append("Intra period must be a multiple of GOPSize, or -1")
    if errors:  # on stdout, as theirs; exit 1
        print("\n".join(f"Error: {e}" for e in errors))
        sys.exit(1)


def encoder(args):
    banner()
    if args in ([], ["--help"]):
        sys.exit(1)
    if args[:1] != ["-c"] or not Path(args[1]).is_file():
        sys.exit(f"Error: cannot open configuration file {args[1:2]}")
    opts = read_cfg(args[1])
    for a in args[2:]:
        if not a.startswith("--") or "=" not in a:
            sys.exit(f"Error: unhandled argument {a}")
        key, value = a[2:].split("=", 1)
        opts[key] = value
    if os.environ.get("FAKE_REFERENCE_FAIL"):
        sys.exit('Error parsing option "Level" with argument "9.9".')
    check_intra_period(opts)
    period = int(opts.get("IntraPeriod", -1))
    w, h, n, qp = opts["SourceWidth"], opts["SourceHeight"], opts["FramesToBeEncoded"], int(opts["QP"])
    x265 = f"qp={qp}:bframes=0:log-level=error" + (f":keyint={period}:min-keyint={period}:scenecut=0" if period > 0 else "")
    pix_in = "yuv420p" if opts["InputBitDepth"] == "8" else "yuv420p10le"
    vvc = ROLE.startswith("Encoder")
    codec = (
        ["-c:v", "libvvenc", "-pix_fmt", "yuv420p10le", "-qp", str(qp), "-qpa", "0", "-f", "vvc"]
        if vvc
        else ["-c:v", "libx265", "-x265-params", x265, "-f", "hevc"]
    )
    subprocess.run(
        [
            FFMPEG,
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_in,
            "-s",
            f"{w}x{h}",
            "-r",
            opts["FrameRate"],
            "-i",
            opts["InputFile"],
            "-frames:v",
            n,
            *codec,
            opts["BitstreamFile"],
        ],
        check=True,
    )
    print(f"POC    0 TId: 0 ( I-SLICE, QP {qp} )")
    if "ReconFile" in opts:
        decode(opts["BitstreamFile"], opts["ReconFile"], vvc, opts["OutputBitDepth"])
    print("Total Time: 0.1 sec.")


def decode(bitstream, out, vvc, depth):
    pix = "yuv420p" if depth == "8" else "yuv420p10le"  # 0: the stream's own, 10 bits for main10
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "vvc" if vvc else "hevc", "-i", bitstream, "-f", "rawvideo", "-pix_fmt", pix, out],
        check=True,
    )


def decoder(args):
    banner()
    if args in ([], ["--help"]):
        sys.exit(1)
    opts = dict(zip(args[::2], args[1::2]))
    if set(opts) != {"-b", "-o", "-d"} or opts["-d"] not in ("0", "8", "10"):
        sys.exit(f"unexpected decoder arguments {args}")
    decode(opts["-b"], opts["-o"], ROLE.startswith("Decoder"), opts["-d"])


if __name__ == "__main__":
    log()
    encoder(sys.argv[1:]) if "Encoder" in ROLE else decoder(sys.argv[1:])
