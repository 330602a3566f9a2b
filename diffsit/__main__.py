"""``python -m diffsit encode|decode``: Diff-SIT on raw 4:2:0 files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffsit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="raw .yuv -> Diff-SIT bitstream")
    enc.add_argument("input", type=Path, help="raw 4:2:0 .yuv, geometry from its name (Name_WxH_FPS.yuv) or -s")
    enc.add_argument("-o", "--output", type=Path, required=True)
    enc.add_argument("--model", default="tiny-lambda1", help="model folder, shipped name, or random[:SEED] (untrained)")
    enc.add_argument("-s", "--size", help="WxH")
    enc.add_argument("--fps", type=float)
    enc.add_argument("--frames", type=int, help="first N frames (default: all)")
    dec = sub.add_parser("decode", help="Diff-SIT bitstream -> raw 8-bit 4:2:0 .yuv")
    dec.add_argument("input", type=Path)
    dec.add_argument("-o", "--output", type=Path, required=True)
    dec.add_argument("--model", help="model folder or name (default: the one named in the stream)")
    for a in (enc, dec):
        a.add_argument("--allow-untrained", action="store_true", help="run an untrained (random) model: tests only")
        a.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from bench.codec import CodecUnavailable
    from bench.datasets import DatasetError, PathDataset
    from bench.video import VideoError, write_yuv

    from .bitstream import BitstreamError, stream_model_id
    from .codec import decode_intermediate, encode_video, load_model, refine, spec_for_model_id, to_video

    try:
        if args.command == "encode":
            size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
            (seq,) = PathDataset(args.input, size=size, fps=args.fps).resolve(None)
            video = seq.open(frames=args.frames)
            model = load_model(args.model, allow_untrained=args.allow_untrained)
            data, _ = encode_video(model, video, device=args.device)
            tmp = args.output.with_name(f".{args.output.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(args.output)
            bpp = 8 * len(data) / (video.frames * video.width * video.height)
            print(f"{args.output}: {len(data)} bytes, {video.frames} frames {video.width}x{video.height}, {bpp:.5f} bpp, model {model.model_id}")
        else:
            data = args.input.read_bytes()
            model = load_model(args.model or spec_for_model_id(stream_model_id(data)), allow_untrained=args.allow_untrained)
            stream, x_tilde = decode_intermediate(model, data, device=args.device)
            video = to_video(refine(model, x_tilde, stream.intra_period).cpu(), stream.width, stream.height, float(stream.fps))
            write_yuv(video, args.output)  # atomic: no partial file on failure
            print(f"{args.output}: {video.frames} frames {video.width}x{video.height}")
    except (BitstreamError, CodecUnavailable, DatasetError, VideoError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
