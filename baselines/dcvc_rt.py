"""DCVC-RT (CVPR 2025), run from the user's checkout of microsoft/DCVC, on CUDA only.

DCVC-RT is the real-time member of the family and the one recent papers compare with. It
runs as its ``test_video.py`` runs it with ``--write_stream 1``: rate points are its q
indices 0..63 (63 the highest rate; ``qp_i`` = ``qp_p``), P frames shift the q index by its
``qp_shift`` table through the hierarchical pattern ``[0, 1, 0, 2, 0, 2, 0, 2]``, the
temporal feature is reset every ``reset_interval`` frames (default: the sweep's intra period,
or 64, its README's setting, with one intra frame), ``force_zero_thres`` defaults to its
README's 0.12, and the networks run in float16. The stream is DCVC-RT's own (SPS + one NAL
unit per frame, ``src.utils.stream_helper``); per-frame bits are each frame's bytes in the
file, a new SPS counted in the frame that needs it, so they add up to the file. Its encoder
does not reconstruct P frames, so the harness checks no encoder reconstruction; decoding
reads the file alone.

What it needs, refused at plan time with the reason (``check()``):

- a CUDA device: its intra and inter coders use CUDA streams and events, with no CPU path;
- its C++ entropy coder ``MLCodec_extensions_cpp``, which its ``setup.py`` builds for
  Python >= 3.12 only, installed into this Python (``cd DCVC-family/DCVC-RT/src/cpp &&
  python -m pip install .``); its CUDA kernels (``src/layers/extensions/inference``) are
  optional: without them it falls back to PyTorch;
- the checkout (``--dcvc-root``) and its checkpoints ``cvpr2025_image.pth.tar`` and
  ``cvpr2025_video.pth.tar`` (``--dcvc-weights``, default its ``checkpoints/``).

It runs in a child process of its own, as DCVC-FM and DCVC-DC do (:mod:`baselines.dcvc`):
its coder registers the same pybind11 types as theirs. Checkpoint loading, ``trust_checkpoint``
and the identity (checkpoints' SHA-256) are theirs too.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench import progress
from bench.codec import CodecError, CodecUnavailable, RateSpec, Requirement, is_intra_frame

from .dcvc import DCVCCodec, Runner, stack

MIN_PYTHON = (3, 12)  # DCVC-RT/src/cpp/setup.py: python_requires=">=3.12"


class DCVCRT(DCVCCodec):
    name = "dcvc-rt"
    family = "DCVC-RT"
    image_weights = "cvpr2025_image.pth.tar"
    video_weights = "cvpr2025_video.pth.tar"
    runner = "baselines.dcvc_rt:RTRunner"
    coder_modules = ("MLCodec_extensions_cpp",)
    # linspace(0, 63, 4) rounded, its test_video.py's default --rate_num 4
    default_rates = (63, 42, 21, 0)
    rate_spec = RateSpec("int", 0, 63)
    bit_depths = (8,)  # its YUV420Reader reads 8-bit files only

    def __init__(
        self,
        *,
        dcvc_root: str | None = None,
        dcvc_weights: str | None = None,
        device: str = "cuda",
        intra_period: int = -1,
        image_weights: str | None = None,
        video_weights: str | None = None,
        trust_checkpoint: str | None = None,
        reset_interval: int | None = None,
        force_zero_thres: float | None = 0.12,
    ):
        super().__init__(
            dcvc_root=dcvc_root,
            dcvc_weights=dcvc_weights,
            device=device,
            intra_period=intra_period,
            image_weights=image_weights,
            video_weights=video_weights,
            trust_checkpoint=trust_checkpoint,
        )
        if reset_interval is None:  # each intra frame resets the feature anyway
            reset_interval = intra_period if intra_period > 0 else 64
        if isinstance(reset_interval, bool) or not isinstance(reset_interval, int) or reset_interval < 0:
            raise ValueError(f"reset_interval must be a whole number of frames >= 0 (0: never), got {reset_interval!r}")
        self.reset_interval = reset_interval
        self.force_zero_thres = None if force_zero_thres is None or force_zero_thres < 0 else float(force_zero_thres)

    def runner_options(self) -> dict[str, Any]:
        return {"force_zero_thres": self.force_zero_thres}

    def encode_options(self) -> dict[str, Any]:
        return {"reset_interval": self.reset_interval}

    def requirements(self) -> list[Requirement]:
        return [*self.platform_requirements(), *super().requirements()]

    def platform_requirements(self) -> list[Requirement]:
        import torch

        here = f"Python {sys.version_info.major}.{sys.version_info.minor} ({sys.executable})"
        return [
            Requirement(
                "a CUDA device (DCVC-RT's coders use CUDA streams and events; it has no CPU path)",
                self.device.startswith("cuda") and torch.cuda.is_available(),
                f"device {self.device!r}; torch {torch.__version__}, torch.cuda.is_available() = {torch.cuda.is_available()}",
                "run on a machine with an NVIDIA GPU and a CUDA build of torch, with --device cuda (dcvc-rt:device=cuda)",
            ),
            Requirement(
                "Python >= 3.12 (DCVC-RT's C++ coder: src/cpp/setup.py python_requires)",
                sys.version_info >= MIN_PYTHON,
                here,
                "run the benchmark from a Python 3.12+ environment and build DCVC-RT's coder there",
            ),
        ]

    def coder_requirement(self, md: Path) -> Requirement:
        if sys.version_info < MIN_PYTHON:  # nothing to probe: it cannot be built for this Python
            return Requirement("DCVC-RT's C++ entropy coder MLCodec_extensions_cpp", False, f"not buildable for {sys.executable}", self.build_hint(md))
        return super().coder_requirement(md)

    def build_hint(self, md: Path) -> str:
        return (
            f"install it into this Python: cd {md / 'src' / 'cpp'} && {sys.executable} -m pip install . "
            f"(DCVC-family/DCVC-RT/README.md, 'Build the project'; needs Python >= 3.12, cmake, g++ and pybind11; "
            f"optionally its CUDA kernels: cd {md / 'src' / 'layers' / 'extensions' / 'inference'} && {sys.executable} -m pip install .)"
        )

    def check(self) -> None:
        """Every missing thing at once: a machine without CUDA usually lacks the coder too."""
        missing = [r for r in self.requirements() if not r.present]
        if missing:
            raise CodecUnavailable("dcvc-rt cannot run here: " + "; ".join(f"{r.what} missing ({r.where}): {r.fix}" for r in missing))


class RTRunner(Runner):
    """DCVC-RT as its ``test_video.py``'s ``run_one_point_with_stream`` runs it."""

    modules = ("models.image_model", "models.video_model", "utils.stream_helper", "utils.transforms", "layers.cuda_inference")
    INDEX_MAP: ClassVar[tuple[int, ...]] = (0, 1, 0, 2, 0, 2, 0, 2)

    def __init__(self, *, model_dir: str, checkpoints: list, device: str, threads: int, build_hint: str, force_zero_thres: float | None = None):
        import torch

        self.force_zero_thres = force_zero_thres
        try:  # as its set_torch_env(): deterministic algorithms need not fill new memory
            torch.utils.deterministic.fill_uninitialized_memory = False
        except AttributeError:
            pass
        super().__init__(model_dir=model_dir, checkpoints=checkpoints, device=device, threads=threads, build_hint=build_hint)

    def load(self, i_sd, p_sd):
        nets = []
        for net, sd in ((self.m["models.image_model"].DMCI(), i_sd), (self.m["models.video_model"].DMC(), p_sd)):
            net = self.net(net, sd)
            net.update(self.force_zero_thres)
            nets.append(net.half())
        return tuple(nets)

    def frame(self, planes, i: int):
        """Frame i as its (1, 3, H, W) float16 tensor, padded to 16 by replication."""
        import torch

        t = self.m["utils.transforms"]
        yuv = t.ycbcr420_to_444_np(planes[0][i][None], np.stack([planes[1][i], planes[2][i]]))
        x = (torch.from_numpy(yuv).to(device=self.device, dtype=torch.float32) / 255.0)[None].to(torch.float16)
        pad_r, pad_b = self.m["models.image_model"].DMCI.get_padding_size(*planes[0].shape[1:], 16)
        return self.m["layers.cuda_inference"].replicate_pad(x, pad_b, pad_r)

    def planes_of(self, x_hat, h: int, w: int):
        """8-bit planes as its test writes them, in the networks' float16 (its YUV420Writer
        rounds luma but truncates chroma; chroma is rounded here too)."""
        import torch

        y, uv = self.m["utils.transforms"].yuv_444_to_420(x_hat[:, :, :h, :w])
        y, uv = (torch.clamp(p * 255, 0, 255).round().to(torch.uint8).cpu().numpy() for p in (y, uv))
        return y[0, 0], uv[0, 0], uv[0, 1]

    def encode(self, *, planes, bit_depth, fps, q, path, intra_period, reset_interval):
        import torch

        sh, i_net, p_net = self.m["utils.stream_helper"], self.i_net, self.p_net
        h, w = planes[0].shape[1:]
        two = h * w > 1280 * 720  # as its test: two entropy coders above 720p
        i_net.set_use_two_entropy_coders(two)
        p_net.set_use_two_entropy_coders(two)
        p_net.set_curr_poc(0)
        out, sps_helper, sizes, types, last_qp = io.BytesIO(), sh.SPSHelper(), [], [], 0
        with torch.no_grad():
            for i in range(len(planes[0])):
                start, x = out.tell(), self.frame(planes, i)
                intra = is_intra_frame(i, intra_period)
                use_ada_i = int(not intra and reset_interval > 0 and i % reset_interval == 1)
                if intra:
                    qp, encoded = q, i_net.compress(x, q)
                    p_net.clear_dpb()
                    p_net.add_ref_frame(None, encoded["x_hat"])
                else:
                    if use_ada_i:
                        p_net.prepare_feature_adaptor_i(last_qp)
                    qp = p_net.shift_qp(q, self.INDEX_MAP[i % 8])
                    encoded, last_qp = p_net.compress(x, qp), qp
                sps = {"sps_id": -1, "height": h, "width": w, "ec_part": int(two), "use_ada_i": use_ada_i}
                sps["sps_id"], new = sps_helper.get_sps_id(sps)
                if new:
                    sh.write_sps(out, sps)
                sh.write_ip(out, intra, sps["sps_id"], qp, encoded["bit_stream"])
                sizes.append(out.tell() - start)
                types.append("I" if intra else "P")
                progress.advance(1)
        Path(path).write_bytes(out.getvalue())
        return {"frame_bytes": sizes, "frame_types": types, "planes": None}  # its P frames are not reconstructed

    def decode(self, *, path, bit_depth):
        import torch

        if bit_depth not in (None, 8):
            raise CodecError(f"dcvc-rt decodes to 8 bits, not {bit_depth}")
        sh, data = self.m["utils.stream_helper"], Path(path).read_bytes()
        f, sps_helper, out_planes = io.BytesIO(data), sh.SPSHelper(), []
        self.p_net.set_curr_poc(0)
        with torch.no_grad():
            while f.tell() < len(data):
                header = sh.read_header(f)
                if header["nal_type"] == sh.NalType.NAL_SPS:
                    sps_helper.add_sps_by_id(sh.read_sps_remaining(f, header["sps_id"]))
                    continue
                sps = sps_helper.get_sps_by_id(header["sps_id"])
                if sps is None:
                    raise CodecError(f"{path}: a frame refers to SPS {header['sps_id']}, which the stream never sent")
                qp, bit_stream = sh.read_ip_remaining(f)
                x_hat = self.decode_frame(header["nal_type"] == sh.NalType.NAL_I, sps, qp, bit_stream)
                out_planes.append(self.planes_of(x_hat, sps["height"], sps["width"]))
                progress.advance(1)
        if not out_planes:
            raise CodecError(f"{path}: no frames in the DCVC-RT stream")
        return {"planes": stack(out_planes), "bit_depth": 8, "fps": 25.0}  # the stream carries no frame rate

    def decode_frame(self, intra: bool, sps: dict, qp: int, bit_stream: bytes):
        if intra:
            x_hat = self.i_net.decompress(bit_stream, sps, qp)["x_hat"]
            self.p_net.clear_dpb()
            self.p_net.add_ref_frame(None, x_hat)
            return x_hat
        if not self.p_net.dpb:
            raise CodecError("a P frame before any I frame")
        if sps["use_ada_i"]:
            self.p_net.reset_ref_feature()
        return self.p_net.decompress(bit_stream, sps, qp)["x_hat"]
