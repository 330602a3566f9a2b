"""A complete λ-driven codec plugin: the example of docs/codecs.md (linked from the README), run as is by tests/bench/test_sweep_api.py.

It quantises every sample with step λ (a larger λ, fewer bits) and deflates the result, one
zlib stream per frame. Register it with one line in your package's pyproject.toml::

    [project.entry-points."bench.codecs"]
    quantiser = "mypkg.quantiser:Quantiser"
"""

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from bench.codec import Codec, EncodeResult, RateSpec
from bench.video import Video


class Quantiser(Codec):
    name = "quantiser"
    rate_name = "lambda"
    rate_spec = RateSpec("float", 0, 64, exclusive_low=True)  # λ in (0, 64]
    default_rates = (0.5, 1, 2, 4)
    extension = ".q"
    bit_depths = (8, 10)

    def identity(self) -> dict:
        # what changes the numbers: the stream format (bump it when encode changes) and zlib
        return {"codec": self.name, "format": 1, "zlib": zlib.ZLIB_VERSION}

    def encode(self, video: Video, rate, workdir: Path) -> EncodeResult:
        lam = self.parse_rate(rate)
        head = json.dumps({"w": video.width, "h": video.height, "n": video.frames, "fps": video.fps, "depth": video.bit_depth, "lambda": lam}).encode()
        frames = [
            zlib.compress(np.concatenate([np.rint(np.asarray(p[i], np.float64) / lam).astype("<i4").ravel() for p in (video.y, video.u, video.v)]).tobytes())
            for i in range(video.frames)
        ]
        path = Path(workdir) / f"quantiser_{lam:g}{self.extension}"
        path.write_bytes(struct.pack("<I", len(head)) + head + b"".join(struct.pack("<I", len(f)) + f for f in frames))
        return EncodeResult(path, frame_bytes=[4 + len(f) for f in frames], frame_types=["I"] * video.frames)

    def decode(self, path: Path, workdir: Path, *, bit_depth=None) -> Video:
        data = Path(path).read_bytes()
        (n,) = struct.unpack_from("<I", data)
        h = json.loads(data[4 : 4 + n])
        pos, planes = 4 + n, []
        w, hh, peak = h["w"], h["h"], (1 << h["depth"]) - 1
        for _ in range(h["n"]):
            (size,) = struct.unpack_from("<I", data, pos)
            q = np.frombuffer(zlib.decompress(data[pos + 4 : pos + 4 + size]), "<i4").astype(np.float64) * h["lambda"]
            pos += 4 + size
            planes.append(np.clip(np.rint(q), 0, peak).astype(np.uint8 if h["depth"] == 8 else np.uint16))
        y = np.stack([p[: w * hh].reshape(hh, w) for p in planes])
        u = np.stack([p[w * hh : w * hh * 5 // 4].reshape(hh // 2, w // 2) for p in planes])
        v = np.stack([p[w * hh * 5 // 4 :].reshape(hh // 2, w // 2) for p in planes])
        video = Video(y, u, v, bit_depth=h["depth"], fps=h["fps"])
        return video.to_bit_depth(bit_depth) if bit_depth else video
