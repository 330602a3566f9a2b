"""DCVC-DC and DCVC-FM, run from the user's checkout of microsoft/DCVC and its checkpoints.

Nothing of DCVC is vendored or pip-installable: ``dcvc_root`` (``--dcvc-root``) is a checkout
of https://github.com/microsoft/DCVC (the repository root, or the model's own folder, e.g.
``DCVC-family/DCVC-FM``), and ``dcvc_weights`` (``--dcvc-weights``) the folder of its
checkpoints (default: the model folder's ``checkpoints/``). The adapter imports the
checkout's ``src`` package the way its ``test_video.py`` does and drives it frame by frame:

- **DCVC-FM** (CVPR 2024): rate points are its q indices 0..63, 63 the highest rate (one q
  for I and P frames);
  the stream is DCVC-FM's own (SPS + frame NAL units, ``src.utils.stream_helper``), written
  by ``DMCI.encode``/``DMC.encode`` and read back by ``decompress``. P frames use its
  hierarchical-quality pattern (``fa_idx``, rate GOP 8) and the feature reset every 32 frames.
- **DCVC-DC** (CVPR 2023): rate points are indices into ``rate_num`` q scales interpolated
  log-linearly between the checkpoint's extremes, index 0 the largest q scale (the lowest
  rate), as its ``test_video.py`` numbers them; each frame's stream
  is written by ``encode_decode(..., output_path=...)`` (``encode_i``/``encode_p``) and read
  back with ``decode_i``/``decode_p`` + ``decompress``. The frames' streams are concatenated in
  one file with their lengths (:mod:`baselines.container`).

Both are fed YUV 4:2:0 content as their ``--yuv420 1`` tests are: planes scaled to [0, 1],
chroma upsampled with the checkout's ``ycbcr420_to_444``, output back with
``ycbcr444_to_420``; frames are padded by replication to the model's multiple and cropped back.
Bitstreams need DCVC's C++ entropy coder; without it the checkout's import fails and this
adapter says how to build it (``cd <model>/src && mkdir build && cd build && cmake ../cpp
-DCMAKE_BUILD_TYPE=Release && make -j``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.codec import (
    Codec,
    CodecError,
    CodecOption,
    CodecUnavailable,
    EncodeResult,
    Rate,
    RateError,
    RateSpec,
    Requirement,
    check_intra_period,
    is_intra_frame,
)
from bench.video import Video

from .container import frame_sizes, read_container, write_container


def _intra_dpb(x_hat) -> dict:
    """DCVC's decoded-picture buffer after an intra frame (both families use this shape)."""
    return {"ref_frame": x_hat, "ref_feature": None, "ref_mv_feature": None, "ref_y": None, "ref_mv_y": None}


BUILD_HINT = "cd {src} && mkdir -p build && cd build && cmake ../cpp -DCMAKE_BUILD_TYPE=Release && make -j"


class DCVCCodec(Codec):
    family: ClassVar[str]  # folder name in DCVC-family/
    image_weights: ClassVar[str]
    video_weights: ClassVar[str]
    pad_multiple: ClassVar[int]
    extension = ".dcvc"
    native_code = True  # DCVC's C++ entropy coder runs in this process
    learned = True
    rate_name = "q_index"
    # planes are scaled by the source's peak on the way in and quantised to the depth asked
    # for on the way out, as DCVC's own --yuv420 tests do for 8 and 10 bits
    bit_depths = (8, 10)
    # DCVC torch.load()s its checkpoints, and a pickle can run code
    location_options = ("image_weights", "video_weights")

    @classmethod
    def options(cls) -> list[CodecOption]:
        return [
            CodecOption("--dcvc-root", "dcvc_root", "a checkout of microsoft/DCVC, for --codec dcvc-dc / dcvc-fm"),
            CodecOption("--dcvc-weights", "dcvc_weights", "folder of DCVC checkpoints (default: <dcvc-root>/<model>/checkpoints)"),
        ]

    def __init__(
        self,
        *,
        dcvc_root: str | None = None,
        dcvc_weights: str | None = None,
        device: str = "cpu",
        intra_period: int = -1,
        image_weights: str | None = None,
        video_weights: str | None = None,
    ):
        check_intra_period(intra_period)
        self.root = Path(dcvc_root).expanduser() if dcvc_root else None
        self.weights_dir = Path(dcvc_weights).expanduser() if dcvc_weights else None
        self.device = device
        self.intra_period = intra_period
        self.image_file = image_weights or self.image_weights
        self.video_file = video_weights or self.video_weights
        self._mods: dict[str, Any] | None = None
        self._nets = None

    # --- where things are ------------------------------------------------------------------------

    def model_dir(self) -> Path | None:
        if self.root is None:
            return None
        for d in (self.root, self.root / "DCVC-family" / self.family, self.root / self.family):
            if (d / "src" / "models" / "video_model.py").is_file():
                return d
        return None

    def weight_path(self, name: str) -> Path | None:
        folder = self.weights_dir or (self.model_dir() / "checkpoints" if self.model_dir() else None)
        p = folder / name if folder else None
        return p if p is not None and p.is_file() else None

    def requirements(self) -> list[Requirement]:
        md = self.model_dir()
        reqs = [
            Requirement(
                f"a checkout of microsoft/DCVC with {self.family}",
                md is not None,
                str(md) if md else (str(self.root) if self.root else "(no --dcvc-root given)"),
                "git clone https://github.com/microsoft/DCVC and pass --dcvc-root (dcvc_root=) pointing at it",
            )
        ]
        folder = self.weights_dir or (md / "checkpoints" if md else None)
        for name in (self.image_file, self.video_file):
            p = self.weight_path(name)
            reqs.append(
                Requirement(
                    f"{self.family} checkpoint {name}",
                    p is not None,
                    str(p or folder or "(no --dcvc-weights given)"),
                    f"download DCVC's pretrained models (see {self.family}/README.md) into {folder or '--dcvc-weights DIR'}",
                )
            )
        return reqs

    # --- the checkout's modules and networks -----------------------------------------------------

    def modules(self) -> dict[str, Any]:
        """Import the checkout's ``src`` package (as its test script does), then forget it, so
        that DCVC-DC and DCVC-FM (both called ``src``) can load in one process."""
        if self._mods is not None:
            return self._mods
        self.check()
        md = self.model_dir()
        saved = {k: v for k, v in sys.modules.items() if k == "src" or k.startswith("src.")}
        for k in saved:
            del sys.modules[k]
        sys.path.insert(0, str(md))
        try:
            self._mods = {name: importlib.import_module(f"src.{name}") for name in self.module_names}
        except ImportError as e:
            raise CodecUnavailable(
                f"{self.family} in {md} cannot be imported ({e}). If the missing module is DCVC's C++ entropy coder or "
                f"its CUDA ops, build it: {BUILD_HINT.format(src=md / 'src')}; else install {md / 'requirements.txt'}"
            ) from e
        finally:
            sys.path.remove(str(md))
            for k in [k for k in sys.modules if k == "src" or k.startswith("src.")]:
                del sys.modules[k]
            sys.modules.update(saved)
        return self._mods

    module_names: ClassVar[tuple[str, ...]] = ("models.image_model", "models.video_model", "utils.stream_helper", "transforms.functional")

    def nets(self):
        if self._nets is None:
            m = self.modules()
            helper = m["utils.stream_helper"]
            i_net, p_net = self._architectures(m)
            for net, name in ((i_net, self.image_file), (p_net, self.video_file)):
                net.load_state_dict(helper.get_state_dict(str(self.weight_path(name))))
                net.to(self.device).eval()
            self._update(i_net, p_net)
            self._nets = (i_net, p_net)
        return self._nets

    # --- protocol ------------------------------------------------------------------------------

    def encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        import torch

        with torch.no_grad():
            return self._encode(video, rate, Path(workdir))

    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        import torch

        with torch.no_grad():
            return self._decode(Path(path), Path(workdir), bit_depth)

    def _to_444(self, video: Video, i: int):
        import torch

        f = self.modules()["transforms.functional"]
        peak = float(video.peak)
        y = video.y[i][None].astype(np.float32) / peak
        uv = np.stack([video.u[i], video.v[i]]).astype(np.float32) / peak
        x = torch.from_numpy(np.ascontiguousarray(f.ycbcr420_to_444(y, uv)))[None].to(self.device)
        return self._pad(x, video.height, video.width)

    def _pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        return tuple(self.modules()["utils.stream_helper"].get_padding_size(h, w, self.pad_multiple))

    def _pad(self, x, h, w):
        import torch.nn.functional as F

        pads = self._pads(h, w)
        return F.pad(x, pads, mode="replicate"), pads

    def _to_420(self, x, pads, h, w, bit_depth: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch.nn.functional as F

        f = self.modules()["transforms.functional"]
        left, right, top, bottom = pads
        x = F.pad(x.clamp(0, 1), (-left, -right, -top, -bottom))
        y, uv = f.ycbcr444_to_420(x[0].cpu().numpy())
        peak = (1 << bit_depth) - 1

        def q(a):
            return np.clip(np.rint(np.asarray(a) * peak), 0, peak).astype(np.uint8 if bit_depth == 8 else np.uint16)

        return q(y)[0], q(uv)[0], q(uv)[1]

    def _video(self, planes, fps, bit_depth: int = 8) -> Video:
        ys, us, vs = zip(*planes)
        return Video(np.stack(ys), np.stack(us), np.stack(vs), bit_depth=bit_depth, fps=fps)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "family": self.family,
            "model_dir": str(self.model_dir()) if self.model_dir() else None,
            "weights": [str(self.weight_path(n)) for n in (self.image_file, self.video_file)],
            "device": self.device,
            "intra_period": self.intra_period,
        }


class DCVCFM(DCVCCodec):
    name = "dcvc-fm"
    family = "DCVC-FM"
    image_weights = "cvpr2024_image.pth.tar"
    video_weights = "cvpr2024_video.pth.tar"
    pad_multiple = 16
    default_rates = (63, 42, 21, 0)
    rate_spec = RateSpec("int", 0, 63)
    RESET_INTERVAL, RATE_GOP, INDEX_MAP = 32, 8, (0, 1, 0, 2, 0, 2, 0, 2)

    def _architectures(self, m):
        return m["models.image_model"].DMCI(), m["models.video_model"].DMC()

    def _update(self, i_net, p_net):
        i_net.update(None)
        p_net.update(None)

    def _fa_idx(self, i: int) -> int:
        return 3 if i % self.RESET_INTERVAL == 1 else self.INDEX_MAP[i % self.RATE_GOP]

    def _encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        q = self.parse_rate(rate)
        i_net, p_net = self.nets()
        sh = self.modules()["utils.stream_helper"]
        path = Path(workdir) / f"{self.name}_q{q}{self.extension}"
        sps_helper, planes, dpb, sizes, types = sh.SPSHelper(), [], None, [], []
        with open(path, "wb") as out:
            for i in range(video.frames):
                start = out.tell()
                x, pads = self._to_444(video, i)
                intra = is_intra_frame(i, self.intra_period)
                fa_idx = 0 if intra else self._fa_idx(i)
                if not intra and i % self.RESET_INTERVAL == 1:
                    dpb["ref_feature"] = None
                sps = {"sps_id": -1, "height": video.height, "width": video.width, "qp": q, "fa_idx": fa_idx}
                sps_id, new = sps_helper.get_sps_id(sps)
                sps["sps_id"] = sps_id
                if new:
                    sh.write_sps(out, sps)
                if intra:
                    dpb = _intra_dpb(i_net.encode(x, q, sps_id, out)["x_hat"])
                else:
                    dpb = p_net.encode(x, dpb, q, fa_idx, sps_id, out)["dpb"]
                out.flush()
                sizes.append(out.tell() - start)  # a new SPS counts in the frame that needs it
                types.append("I" if intra else "P")
                planes.append(self._to_420(dpb["ref_frame"], pads, video.height, video.width, video.bit_depth))
        rec = self._video(planes, video.fps, video.bit_depth)
        return EncodeResult(path, frame_bytes=sizes, frame_types=types, reconstruction=rec, tools={"dcvc": str(self.model_dir())})

    def _decode(self, path: Path, workdir: Path, bit_depth: int | None) -> Video:
        bit_depth = bit_depth or 8  # DCVC-FM's stream does not say
        i_net, p_net = self.nets()
        sh = self.modules()["utils.stream_helper"]
        sps_helper, planes, dpb, pending = sh.SPSHelper(), [], None, []
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            while pending or f.tell() < size:
                if not pending:
                    header = sh.read_header(f)
                    if header["nal_type"] == sh.NalType.NAL_SPS:
                        sps_helper.add_sps_by_id(sh.read_sps_remaining(f, header["sps_id"]))
                        continue
                    if header["nal_type"] == sh.NalType.NAL_Ps:
                        sps_id, pending = header["sps_ids"][0], list(header["sps_ids"][1:])
                    else:
                        sps_id = header["sps_id"]
                    bit_stream = sh.read_ip_remaining(f)
                else:
                    sps_id, bit_stream = pending.pop(0), None
                sps = sps_helper.get_sps_by_id(sps_id)
                if header["nal_type"] == sh.NalType.NAL_I:
                    dpb = _intra_dpb(i_net.decompress(bit_stream, sps)["x_hat"])
                else:
                    if dpb is None:
                        raise CodecError(f"{path}: a P frame before any I frame")
                    if sps["fa_idx"] == 3:
                        dpb["ref_feature"] = None
                    dpb = p_net.decompress(bit_stream, dpb, sps)["dpb"]
                h, w = sps["height"], sps["width"]
                planes.append(self._to_420(dpb["ref_frame"], self._pads(h, w), h, w, bit_depth))
        if not planes:
            raise CodecError(f"{path}: no frames in the DCVC-FM stream")
        return self._video(planes, 25.0, bit_depth)  # DCVC-FM's stream carries no frame rate


class DCVCDC(DCVCCodec):
    name = "dcvc-dc"
    family = "DCVC-DC"
    image_weights = "cvpr2023_image_yuv420_psnr.pth.tar"
    video_weights = "cvpr2023_video_yuv420_psnr.pth.tar"
    pad_multiple = 64
    default_rates = (3, 2, 1, 0)
    module_names = ("models.image_model", "models.video_model", "utils.stream_helper", "transforms.functional", "utils.common")

    def __init__(
        self,
        *,
        dcvc_root: str | None = None,
        dcvc_weights: str | None = None,
        device: str = "cpu",
        intra_period: int = -1,
        image_weights: str | None = None,
        video_weights: str | None = None,
        rate_num: int = 4,
    ):
        super().__init__(
            dcvc_root=dcvc_root, dcvc_weights=dcvc_weights, device=device, intra_period=intra_period, image_weights=image_weights, video_weights=video_weights
        )
        if not 2 <= rate_num <= 64:
            raise ValueError(f"rate_num must be 2..64 (DCVC-DC's test_video.py range), got {rate_num}")
        self.rate_num = rate_num

    def parse_rate(self, text: str | Rate) -> int:
        q = super().parse_rate(text)
        if not 0 <= q < self.rate_num:
            raise RateError(f"dcvc-dc: rate index {q} is outside 0..{self.rate_num - 1} (rate_num={self.rate_num})")
        return q

    def _architectures(self, m):
        return m["models.image_model"].IntraNoAR(), m["models.video_model"].DMC()

    def _update(self, i_net, p_net):
        i_net.update(force=True)
        p_net.update(force=True)

    def q_scales(self, q: int) -> tuple[float, float, float]:
        """(intra, P-frame mv, P-frame y) q scales of rate index q, as DCVC-DC's test_video.py makes them."""
        m = self.modules()
        interp = m["utils.common"].interpolate_log
        i_s = m["models.image_model"].IntraNoAR.get_q_scales_from_ckpt(str(self.weight_path(self.image_file)))
        y_s, mv_s = m["models.video_model"].DMC.get_q_scales_from_ckpt(str(self.weight_path(self.video_file)))
        pick = lambda s: float(interp(float(s[-1]), float(s[0]), self.rate_num)[q])
        return pick(i_s), pick(mv_s), pick(y_s)

    def _encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        q = self.parse_rate(rate)
        i_net, p_net = self.nets()
        i_scale, mv_scale, y_scale = self.q_scales(q)
        frames, planes, dpb, types = [], [], None, []
        tmp = Path(workdir) / f"{self.name}_q{q}.frame.bin"
        for i in range(video.frames):
            x, pads = self._to_444(video, i)
            if is_intra_frame(i, self.intra_period):
                res = i_net.encode_decode(x, i_scale, str(tmp), pic_width=video.width, pic_height=video.height)
                dpb = _intra_dpb(res["x_hat"])
            else:
                res = p_net.encode_decode(x, dpb, str(tmp), pic_width=video.width, pic_height=video.height, mv_y_q_scale=mv_scale, y_q_scale=y_scale)
                dpb = res["dpb"]
            frames.append([tmp.read_bytes()])
            types.append("I" if is_intra_frame(i, self.intra_period) else "P")
            planes.append(self._to_420(dpb["ref_frame"], pads, video.height, video.width, video.bit_depth))
        tmp.unlink(missing_ok=True)
        header = {
            "model": self.name,
            "rate": q,
            "rate_num": self.rate_num,
            "frames": video.frames,
            "fps": video.fps,
            "intra_period": self.intra_period,
            "bit_depth": video.bit_depth,
        }
        path = write_container(Path(workdir) / f"{self.name}_q{q}{self.extension}", header, frames)
        return EncodeResult(
            path,
            frame_bytes=frame_sizes(frames),
            frame_types=types,
            reconstruction=self._video(planes, video.fps, video.bit_depth),
            tools={"dcvc": str(self.model_dir())},
        )

    def _decode(self, path: Path, workdir: Path, bit_depth: int | None) -> Video:
        header, frames = read_container(path)
        bit_depth = bit_depth or int(header.get("bit_depth", 8))
        if header.get("model") != self.name:
            raise CodecError(f"{path} was not written by dcvc-dc (header model {header.get('model')!r})")
        i_net, p_net = self.nets()
        sh = self.modules()["utils.stream_helper"]
        self.intra_period = int(header.get("intra_period", -1))
        tmp = Path(workdir) / f"{Path(path).stem}.frame.bin"
        planes, dpb = [], None
        for i, (data,) in enumerate(frames):
            tmp.write_bytes(data)
            if is_intra_frame(i, self.intra_period):
                h, w, q_index, stream = sh.decode_i(str(tmp))
                x = i_net.decompress(stream, h, w, q_index / 100)["x_hat"]
                dpb = _intra_dpb(x)
            else:
                h, w, mv_q, y_q, stream = sh.decode_p(str(tmp))
                dpb = p_net.decompress(dpb, stream, h, w, mv_q / 100, y_q / 100)["dpb"]
            planes.append(self._to_420(dpb["ref_frame"], self._pads(h, w), h, w, bit_depth))
        tmp.unlink(missing_ok=True)
        return self._video(planes, float(header.get("fps", 25.0)), bit_depth)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "rate_num": self.rate_num}
