"""CompressAI's learned codecs as benchmark baselines: ``ssf2020`` (video) and image codecs run all-intra.

- ``ssf2020``: scale-space flow (Agustsson et al., CVPR 2020), low delay: one key frame,
  then inter frames predicted from the previous *reconstruction* (a key frame every
  ``intra_period`` frames if given).
- ``bmshj2018-hyperprior``, ``mbt2018-mean``, ``cheng2020-anchor``: CompressAI's image
  codecs, every frame coded alone (an all-intra video baseline).

Rate points are CompressAI's quality indices (1 = lowest rate). Frames become RGB with the
harness's BT.709 conversion, are padded right/bottom by replication to a multiple of the
model's total stride (64 for the image codecs, 128 for ssf2020, whose hyperprior downsamples
three times) and cropped back after decoding; bits are the file's bytes
(:mod:`baselines.container`), coded by CompressAI's own range coder through
``compress``/``decompress``.

Pretrained weights are the files CompressAI's zoo downloads (``torch.hub``'s checkpoint
cache, e.g. ``~/.cache/torch/hub/checkpoints/ssf2020-mse-1-c1ac1a47.pth.tar``) or a
``--weights`` folder; they are loaded as the zoo loads them (``load_pretrained`` key renames,
``from_state_dict``) but with ``torch.load(weights_only=True)`` and no download. A missing file
stops the sweep at plan time naming the file and its URL. ``random_weights_for_tests=true``
builds seeded random networks instead: for tests of the plumbing only, and marked so in the
manifest.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from bench import progress, weights
from bench.codec import Codec, CodecError, CodecUnavailable, EncodeResult, Rate, RateSpec, Requirement, check_intra_period, is_intra_frame
from bench.video import Video, crop, pad_to_multiple, rgb_to_yuv420

from .container import frame_sizes, read_container, write_container


def _zoo(module: str):
    import importlib

    return importlib.import_module(f"compressai.zoo.{module}")


class CompressAICodec(Codec):
    rate_name = "quality"
    extension = ".lbs"
    native_code = True  # CompressAI's C++ range coder runs in this process
    learned = True
    #: zoo architecture name and zoo module ("image" or "video")
    architecture: ClassVar[str]
    zoo_module: ClassVar[str] = "image"
    qualities: ClassVar[tuple[int, ...]]
    #: total stride of the hyper-latent: frames are padded to a multiple of it
    multiple: ClassVar[int] = 64
    # RGB in [0, 1] from any depth in, the header's depth out (the models are depth-agnostic)
    bit_depths = (8, 10)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "qualities" in cls.__dict__:
            cls.rate_spec = RateSpec("choice", choices=cls.qualities)

    def __init__(self, *, metric: str = "mse", device: str = "cpu", random_weights_for_tests: bool = False):
        if metric not in ("mse", "ms-ssim"):
            raise ValueError(f"{self.name}: metric must be mse or ms-ssim (the objective the zoo model was trained for), got {metric!r}")
        self.metric = metric
        self.device = device
        self.random_weights = bool(random_weights_for_tests)
        self._models: dict[int, Any] = {}

    # --- rate points and weights ---------------------------------------------------------

    def weights_url(self, quality: int) -> str:
        return _zoo(self.zoo_module).model_urls[self.architecture][self.metric][quality]

    def weights_file(self, quality: int) -> str:
        return self.weights_url(quality).rsplit("/", 1)[-1]

    def requirements(self) -> list[Requirement]:
        if importlib.util.find_spec("compressai") is None:
            return [Requirement("the compressai package", False, "python environment", "pip install 'diffsit-bench[compressai]'")]
        if self.random_weights:
            return []
        reqs = []
        for q in self.default_rates:
            name = self.weights_file(q)
            path = weights.find_file(name)
            reqs.append(
                Requirement(
                    f"{self.name} quality {q} ({self.metric}) weights {name}",
                    path is not None,
                    str(path) if path else ", ".join(map(str, weights.search_dirs())),
                    f"download {self.weights_url(q)} into {weights.search_dirs()[-1]}",
                )
            )
        return reqs

    def model(self, quality: int):
        if quality not in self._models:
            self._models[quality] = self._build(quality).to(self.device).eval()
        return self._models[quality]

    def _build(self, quality: int):
        import torch

        zoo = _zoo(self.zoo_module)
        cls = zoo.model_architectures[self.architecture]
        if self.random_weights:
            torch.manual_seed(quality)  # encoder and decoder processes build the same network
            net = self._random(cls, quality)
        else:
            path = weights.find_file(self.weights_file(quality))
            if path is None:
                raise CodecUnavailable(
                    weights.file_missing_message(
                        self.weights_file(quality), f"CompressAI {self.architecture} q{quality} ({self.metric})", self.weights_url(quality)
                    )
                )
            from compressai.zoo.pretrained import load_pretrained

            state = torch.load(path, map_location="cpu", weights_only=True)
            net = cls.from_state_dict(load_pretrained(state.get("state_dict", state)))
        net.update(force=True)
        return net

    def _random(self, cls, quality: int):
        return cls(*_zoo(self.zoo_module).cfgs[self.architecture][quality])

    # --- protocol ----------------------------------------------------------------------------

    def encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        import torch

        q = self.parse_rate(rate)
        net = self.model(q)
        self._reset(self._header_extra())
        frames, recon = [], []
        with torch.no_grad():
            for i in range(video.frames):
                x = pad_to_multiple(video.rgb(i, i + 1, device=self.device), self.multiple)
                strings, x_rec = self._encode_frame(net, x, i)
                frames.append(strings)
                recon.append(crop(x_rec.clamp(0, 1), video.height, video.width).cpu())
                progress.advance(1)
        header = {
            "model": self.architecture,
            "quality": q,
            "metric": self.metric,
            "width": video.width,
            "height": video.height,
            "fps": video.fps,
            "frames": video.frames,
            **self._header_extra(),
        }
        if video.bit_depth != 8:  # 8-bit streams stay byte-identical to those of earlier versions
            header["bit_depth"] = video.bit_depth
        path = write_container(Path(workdir) / f"{self.name}_q{q}{self.extension}", header, frames)
        types = ["I" if self._is_intra(i) else "P" for i in range(video.frames)]
        rec = rgb_to_yuv420(torch.cat(recon), video.bit_depth, video.fps)
        return EncodeResult(path, frame_bytes=frame_sizes(frames), frame_types=types, reconstruction=rec, tools={"compressai": _version()})

    def _is_intra(self, index: int) -> bool:
        return True

    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        import torch

        header, frames = read_container(path)
        if header.get("model") != self.architecture or header.get("metric") != self.metric:
            raise CodecError(f"{path} was written by {header.get('model')} ({header.get('metric')}), not {self.architecture} ({self.metric})")
        net = self.model(int(header["quality"]))
        self._reset(header)
        h, w = header["height"], header["width"]
        ph, pw = -(-h // self.multiple) * self.multiple, -(-w // self.multiple) * self.multiple
        out = []
        with torch.no_grad():
            for i, strings in enumerate(frames):
                out.append(crop(self._decode_frame(net, strings, (ph // self.multiple, pw // self.multiple), i).clamp(0, 1), h, w).cpu())
                progress.advance(1)
        return rgb_to_yuv420(torch.cat(out), bit_depth or int(header.get("bit_depth", 8)), float(header["fps"]))

    @classmethod
    def contract_options(cls) -> dict[str, Any]:
        return {"random_weights_for_tests": True}  # the contract tests the coding, not the zoo's weights

    def identity(self) -> dict[str, Any]:
        """Everything ``describe()`` says: the architecture, objective and weights (the zoo's
        file names carry their hash), and the compressai version, whose entropy coder and
        layers make the numbers. (The manifest's fields, as before: cached results keep their key.)"""
        return self.describe()

    def describe(self) -> dict[str, Any]:
        info = {
            **super().describe(),
            "architecture": self.architecture,
            "metric": self.metric,
            "device": self.device,
            "weights": "RANDOM (random_weights_for_tests: results mean nothing)" if self.random_weights else "CompressAI zoo",
        }
        if importlib.util.find_spec("compressai") is not None:
            import compressai

            info["compressai"] = compressai.__version__
            if not self.random_weights:
                info["weights_files"] = {q: self.weights_file(q) for q in self._models}
        return info

    # --- per-frame coding (image codecs: every frame alone) -------------------------------------

    def _header_extra(self) -> dict:
        return {}

    def _reset(self, header: dict) -> None:
        """Start a new stream (encoder or decoder side)."""

    def _encode_frame(self, net, x, index: int):
        out = net.compress(x)
        z_shape = tuple(out["shape"])
        if z_shape != (x.shape[-2] // self.multiple, x.shape[-1] // self.multiple):
            raise CodecError(f"{self.name}: unexpected latent shape {z_shape} for a {tuple(x.shape[-2:])} frame")
        strings = [s[0] for s in out["strings"]]
        # the decoder's reconstruction, from the strings, as the runner will measure it
        return strings, net.decompress([[s] for s in strings], z_shape)["x_hat"]

    def _decode_frame(self, net, strings, z_shape, index: int):
        return net.decompress([[s] for s in strings], z_shape)["x_hat"]


class Bmshj2018Hyperprior(CompressAICodec):
    name = "bmshj2018-hyperprior"
    architecture = "bmshj2018-hyperprior"
    qualities = tuple(range(1, 9))
    default_rates = (5, 4, 3, 2, 1)


class Mbt2018Mean(CompressAICodec):
    name = "mbt2018-mean"
    architecture = "mbt2018-mean"
    qualities = tuple(range(1, 9))
    default_rates = (5, 4, 3, 2, 1)


class Cheng2020Anchor(CompressAICodec):
    name = "cheng2020-anchor"
    architecture = "cheng2020-anchor"
    qualities = tuple(range(1, 7))
    default_rates = (5, 4, 3, 2, 1)


class SSF2020(CompressAICodec):
    """Scale-space flow, low delay: key frame, then P frames from the previous reconstruction."""

    name = "ssf2020"
    architecture = "ssf2020"
    zoo_module = "video"
    multiple = 128
    qualities = tuple(range(1, 10))
    default_rates = (5, 4, 3, 2, 1)

    def __init__(self, *, metric: str = "mse", device: str = "cpu", intra_period: int = -1, random_weights_for_tests: bool = False):
        super().__init__(metric=metric, device=device, random_weights_for_tests=random_weights_for_tests)
        check_intra_period(intra_period)
        self.intra_period = intra_period
        self._ref = None

    def weights_url(self, quality: int) -> str:
        urls = _zoo("video").model_urls[self.architecture]
        if self.metric not in urls:
            raise CodecError(f"ssf2020 has pretrained weights only for {', '.join(urls)}, not {self.metric}")
        return urls[self.metric][quality]

    def _random(self, cls, quality: int):
        return cls()

    def _header_extra(self) -> dict:
        return {"intra_period": self.intra_period}

    def _is_intra(self, index: int) -> bool:
        return is_intra_frame(index, self.intra_period)

    def _reset(self, header: dict) -> None:
        self.intra_period = int(header.get("intra_period", -1))
        self._ref = None

    def _encode_frame(self, net, x, index: int):
        shape = (x.shape[-2] // self.multiple, x.shape[-1] // self.multiple)
        if is_intra_frame(index, self.intra_period):
            x_rec, out = net.encode_keyframe(x)
            strings = [s[0] for s in out["strings"]]
        else:
            x_rec, out = net.encode_inter(x, self._ref)
            strings = [s[0] for part in ("motion", "residual") for s in out["strings"][part]]
        if any(tuple(s) != shape for s in _shapes(out["shape"])):
            raise CodecError(f"ssf2020: unexpected latent shape {out['shape']} for a {tuple(x.shape[-2:])} frame")
        # the next reference is what the decoder will have: decode the strings just written
        return strings, self._decode_frame(net, strings, shape, index)

    def _decode_frame(self, net, strings, z_shape, index: int):
        if is_intra_frame(index, self.intra_period):
            x = net.decode_keyframe([[strings[0]], [strings[1]]], z_shape)
        else:
            parts = {"motion": [[strings[0]], [strings[1]]], "residual": [[strings[2]], [strings[3]]]}
            x = net.decode_inter(self._ref, parts, {"motion": z_shape, "residual": z_shape})
        self._ref = x  # unclamped, as CompressAI's ssf2020 references are
        return x

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "intra_period": self.intra_period}


def _version() -> str:
    import compressai

    return compressai.__version__


def _shapes(shape) -> list:
    return list(shape.values()) if isinstance(shape, dict) else [shape]
