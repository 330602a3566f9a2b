"""Writes a FAKE microsoft/DCVC checkout (DCVC-DC and/or DCVC-FM) for tests.

The fake ``src`` packages follow the interfaces the adapter uses (class names, method
signatures, return dicts, the stream-helper functions and the checkpoint files), but their
"networks" are a tiny quantiser: frames at quarter resolution, step set by the q index /
q scale, packed with zlib. So the bitstreams are real files whose size falls with the rate,
and the decoder reproduces the encoder exactly. This is not DCVC.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

CORE = """
import struct, zlib
import numpy as np
import torch
import torch.nn.functional as F


def code(x, step):
    small = F.avg_pool2d(x, 4)
    q = torch.round(small / step).to(torch.int16)
    data = struct.pack("<4H", *q.shape) + zlib.compress(q.numpy().tobytes(), 9)
    return data, dequant(data, step)


def dequant(data, step):
    shape = struct.unpack("<4H", data[:8])
    q = np.frombuffer(zlib.decompress(data[8:]), dtype=np.int16).reshape(shape).astype(np.float32)
    return F.interpolate(torch.from_numpy(q) * step, scale_factor=4, mode="nearest")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))
        self.updated = False
"""

FUNCTIONAL = """
import numpy as np


def ycbcr420_to_444(y, uv):
    return np.concatenate([y, uv.repeat(2, axis=1).repeat(2, axis=2)], axis=0)


def ycbcr444_to_420(yuv):
    c, h, w = yuv.shape
    uv = yuv[1:].reshape(2, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return yuv[:1], uv
"""

FM_HELPER = """
import enum, struct
import torch


class NalType(enum.IntEnum):
    NAL_SPS = 0
    NAL_I = 1
    NAL_P = 2
    NAL_Ps = 3


def get_padding_size(height, width, p=16):
    new_h, new_w = (height + p - 1) // p * p, (width + p - 1) // p * p
    return 0, new_w - width, 0, new_h - height


def get_state_dict(ckpt_path):
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    return ckpt.get("state_dict", ckpt)


class SPSHelper:
    def __init__(self):
        self.spss = []

    def get_sps_id(self, target):
        for sps in self.spss:
            if all(sps[k] == target[k] for k in ("height", "width", "qp", "fa_idx")):
                return sps["sps_id"], False
        target = dict(target, sps_id=len(self.spss))
        self.spss.append(target)
        return target["sps_id"], True

    def add_sps_by_id(self, sps):
        self.spss.append(sps)

    def get_sps_by_id(self, sps_id):
        return next(s for s in self.spss if s["sps_id"] == sps_id)


def write_sps(f, sps):
    f.write(struct.pack("<BBHHBB", NalType.NAL_SPS, sps["sps_id"], sps["height"], sps["width"], sps["qp"], sps["fa_idx"]))
    return 8


def write_ip(f, nal_type, sps_id, bit_stream):
    f.write(struct.pack("<BBI", nal_type, sps_id, len(bit_stream)) + bit_stream)
    return 6 + len(bit_stream)


def read_header(f):
    nal_type, sps_id = struct.unpack("<BB", f.read(2))
    return {"nal_type": NalType(nal_type), "sps_id": sps_id}


def read_sps_remaining(f, sps_id):
    h, w, qp, fa_idx = struct.unpack("<HHBB", f.read(6))
    return {"sps_id": sps_id, "height": h, "width": w, "qp": qp, "fa_idx": fa_idx}


def read_ip_remaining(f):
    (n,) = struct.unpack("<I", f.read(4))
    return f.read(n)
"""

FM_IMAGE = """
from ._fake_core import Net, code, dequant
from ..utils.stream_helper import NalType, write_ip


class DMCI(Net):
    def update(self, force_zero_thres=None):
        self.updated = True

    def encode(self, x, qp, sps_id=0, output_file=None):
        assert self.updated, "update() was not called"
        data, x_hat = code(x, 1.0 / (4 + qp))
        n = write_ip(output_file, NalType.NAL_I, sps_id, data)
        return {"x_hat": x_hat, "bit": 8 * n}

    def decompress(self, bit_stream, sps):
        return {"x_hat": dequant(bit_stream, 1.0 / (4 + sps["qp"]))}
"""

FM_VIDEO = """
import os
if os.environ.get("FAKE_DCVC_NO_EXTENSION"):
    import MLCodec_extensions_cpp  # noqa: F401  (as the real one needs its built C++ coder)
from ._fake_core import Net, code, dequant
from ..utils.stream_helper import NalType, write_ip


class DMC(Net):
    def update(self, force_zero_thres=None):
        self.updated = True

    def encode(self, x, dpb, qp, fa_idx=0, sps_id=0, output_file=None):
        data, res = code(x - dpb["ref_frame"], 1.0 / (8 + qp + 4 * fa_idx))
        n = write_ip(output_file, NalType.NAL_P, sps_id, data)
        return {"dpb": dict(dpb, ref_frame=dpb["ref_frame"] + res, ref_feature=1), "bit": 8 * n, "encoding_time": 0.0}

    def decompress(self, bit_stream, dpb, sps):
        res = dequant(bit_stream, 1.0 / (8 + sps["qp"] + 4 * sps["fa_idx"]))
        return {"dpb": dict(dpb, ref_frame=dpb["ref_frame"] + res, ref_feature=1), "decoding_time": 0.0}
"""

DC_HELPER = """
import struct
import torch


def get_padding_size(height, width, p=64):
    new_h, new_w = (height + p - 1) // p * p, (width + p - 1) // p * p
    return 0, new_w - width, 0, new_h - height


def get_state_dict(ckpt_path):
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    return ckpt.get("state_dict", ckpt)


def encode_i(height, width, q_index, bit_stream, output):
    with open(output, "wb") as f:
        f.write(struct.pack("<HHH", height, width, q_index) + bit_stream)


def decode_i(inputpath):
    data = open(inputpath, "rb").read()
    h, w, q = struct.unpack("<HHH", data[:6])
    return h, w, q, data[6:]


def encode_p(string, mv_y_q_index, y_q_index, output, height=0, width=0):
    with open(output, "wb") as f:
        f.write(struct.pack("<HHHH", height, width, mv_y_q_index, y_q_index) + string)


def decode_p(inputpath):
    data = open(inputpath, "rb").read()
    h, w, mv_q, y_q = struct.unpack("<HHHH", data[:8])
    return h, w, mv_q, y_q, data[8:]
"""

DC_COMMON = """
import numpy as np


def interpolate_log(min_val, max_val, num, decending=True):
    values = np.exp(np.linspace(np.log(min_val), np.log(max_val), num))
    return values[::-1] if decending else values
"""

DC_IMAGE = """
import torch
from ._fake_core import Net, code, dequant
from ..utils.stream_helper import encode_i, get_state_dict


class IntraNoAR(Net):
    def __init__(self):
        super().__init__()
        self.q_scale = torch.nn.Parameter(torch.ones(4))

    def update(self, force=False):
        self.updated = True

    @staticmethod
    def get_q_scales_from_ckpt(ckpt_path):
        return get_state_dict(ckpt_path)["q_scale"].reshape(-1)

    def encode_decode(self, x, q_scale, output_path=None, pic_width=None, pic_height=None):
        assert self.updated and output_path is not None and pic_width and pic_height
        q_index = int(round(q_scale * 100))
        data, _ = code(x, q_index / 1000)  # as DCVC-DC's, a larger q scale is a coarser step
        encode_i(pic_height, pic_width, q_index, data, output_path)
        return {"x_hat": dequant(data, q_index / 1000), "bit": 8 * (len(data) + 6)}

    def decompress(self, bit_stream, height, width, q_scale):
        return {"x_hat": dequant(bit_stream, int(round(q_scale * 100)) / 1000)}
"""

DC_VIDEO = """
import torch
from ._fake_core import Net, code, dequant
from ..utils.stream_helper import encode_p, get_state_dict


class DMC(Net):
    def __init__(self):
        super().__init__()
        self.y_q_scale = torch.nn.Parameter(torch.ones(4))
        self.mv_y_q_scale = torch.nn.Parameter(torch.ones(4))

    def update(self, force=False):
        self.updated = True

    @staticmethod
    def get_q_scales_from_ckpt(ckpt_path):
        ckpt = get_state_dict(ckpt_path)
        return ckpt["y_q_scale"].reshape(-1), ckpt["mv_y_q_scale"].reshape(-1)

    def encode_decode(self, x, dpb, output_path=None, pic_width=None, pic_height=None, mv_y_q_scale=None, y_q_scale=None):
        mv_q, y_q = int(round(mv_y_q_scale * 100)), int(round(y_q_scale * 100))
        data, _ = code(x - dpb["ref_frame"], y_q / 1000)
        encode_p(data, mv_q, y_q, output_path, pic_height, pic_width)
        return {"dpb": dict(dpb, ref_frame=dpb["ref_frame"] + dequant(data, y_q / 1000)), "bit": 8 * (len(data) + 8)}

    def decompress(self, dpb, string, height, width, mv_y_q_scale, y_q_scale):
        res = dequant(string, int(round(y_q_scale * 100)) / 1000)
        return {"dpb": dict(dpb, ref_frame=dpb["ref_frame"] + res)}
"""


def make_checkout(root: Path, family: str, *, checkpoints: bool = True) -> Path:
    """root/DCVC-family/<family>/ with src/ and checkpoints/ (random-free: the fake nets have one parameter)."""
    import torch

    model = root / "DCVC-family" / family
    files = {
        "src/__init__.py": "",
        "src/models/__init__.py": "",
        "src/utils/__init__.py": "",
        "src/transforms/__init__.py": "",
        "src/models/_fake_core.py": CORE,
        "src/transforms/functional.py": FUNCTIONAL,
    }
    if family == "DCVC-FM":
        files.update({"src/utils/stream_helper.py": FM_HELPER, "src/models/image_model.py": FM_IMAGE, "src/models/video_model.py": FM_VIDEO})
    else:
        files.update(
            {
                "src/utils/stream_helper.py": DC_HELPER,
                "src/utils/common.py": DC_COMMON,
                "src/models/image_model.py": DC_IMAGE,
                "src/models/video_model.py": DC_VIDEO,
            }
        )
    for rel, text in files.items():
        p = model / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    if checkpoints:
        (model / "checkpoints").mkdir()
        gain = {"gain": torch.ones(1)}
        if family == "DCVC-FM":
            torch.save({"state_dict": gain}, model / "checkpoints" / "cvpr2024_image.pth.tar")
            torch.save({"state_dict": gain}, model / "checkpoints" / "cvpr2024_video.pth.tar")
        else:
            torch.save({**gain, "q_scale": torch.tensor([0.60, 0.45, 0.30, 0.15])}, model / "checkpoints" / "cvpr2023_image_yuv420_psnr.pth.tar")
            torch.save(
                {**gain, "y_q_scale": torch.tensor([0.50, 0.35, 0.20, 0.10]), "mv_y_q_scale": torch.tensor([0.40, 0.30, 0.20, 0.10])},
                model / "checkpoints" / "cvpr2023_video_yuv420_psnr.pth.tar",
            )
    return model
