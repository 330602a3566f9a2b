from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from support import random_video

from bench.video import (
    Video,
    VideoError,
    YuvSizeError,
    crop,
    crop_video,
    pad_to_multiple,
    pad_video,
    parse_yuv_name,
    read_yuv,
    rgb_to_yuv420,
    write_yuv,
    yuv420_to_rgb,
)


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_yuv_round_trip(tmp_path, bit_depth):
    v = random_video(frames=4, bit_depth=bit_depth)
    path = write_yuv(v, tmp_path / "clip.yuv")
    assert path.stat().st_size == 4 * 96 * 64 * 3 // 2 * (1 if bit_depth == 8 else 2)
    back = read_yuv(path, 96, 64, bit_depth=bit_depth)
    for p in "yuv":
        np.testing.assert_array_equal(getattr(back, p), getattr(v, p))
    assert back.bit_depth == bit_depth


def test_10bit_file_is_16bit_little_endian(tmp_path):
    v = random_video(frames=1, height=2, width=2, bit_depth=10)
    v.y[0, 0, 0] = 0x3FF
    raw = write_yuv(v, tmp_path / "x.yuv").read_bytes()
    assert raw[:2] == b"\xff\x03"


def test_read_is_lazy_and_by_frame_range(tmp_path):
    v = random_video(frames=6)
    path = write_yuv(v, tmp_path / "clip.yuv")
    part = read_yuv(path, 96, 64, start=2, frames=3)
    assert isinstance(part.y.base, np.memmap) or isinstance(part.y, np.memmap)
    np.testing.assert_array_equal(part.y, v.y[2:5])
    np.testing.assert_array_equal(part.v, v.v[2:5])
    with pytest.raises(VideoError, match="has 6"):
        read_yuv(path, 96, 64, start=4, frames=3)


def test_size_not_whole_frames_names_file_and_sizes(tmp_path):
    path = tmp_path / "bad_96x64.yuv"
    path.write_bytes(b"\0" * (96 * 64 * 3 // 2 + 17))
    with pytest.raises(YuvSizeError) as e:
        read_yuv(path, 96, 64)
    msg = str(e.value)
    assert str(path) in msg and "9216 bytes each" in msg and f"{96 * 64 * 3 // 2 + 17} bytes" in msg


def test_bt709_against_hand_computed_values():
    # Y=128, Cb=64, Cr=192 (8-bit full range); by hand with Kr=.2126, Kb=.0722:
    # y=128/255, cb=64/255-.5, cr=192/255-.5
    # R = y + 1.5748 cr ; B = y + 1.8556 cb ; G = (y - .2126 R - .0722 B) / .7152
    y, cb, cr = 128 / 255, 64 / 255 - 0.5, 192 / 255 - 0.5
    r = y + 1.5748 * cr
    b = y + 1.8556 * cb
    g = (y - 0.2126 * r - 0.0722 * b) / 0.7152
    # y = .50196078, cb = -.24901961, cr = .25294118
    # R = .50196078 + .39833176 = .90029254
    # B = .50196078 - .46208078 = .03988000
    # G = (.50196078 - .19140219 - .00287934) / .7152 = .43020029
    expected = [0.90029254, 0.43020029, 0.03988000]
    np.testing.assert_allclose([r, g, b], expected, atol=2e-7)
    full = lambda val, shape: np.full(shape, val, np.uint8)
    rgb = yuv420_to_rgb(full(128, (1, 4, 4)), full(64, (1, 2, 2)), full(192, (1, 2, 2)))
    np.testing.assert_allclose(rgb[0, :, 0, 0].numpy(), expected, atol=1e-6)
    # Greys stay grey; saturated colours clip to [0, 1].
    grey = yuv420_to_rgb(full(200, (1, 2, 2)), full(128, (1, 1, 1)), full(128, (1, 1, 1)))
    # Cb = Cr = 128 is +0.00196 (128/255 - 0.5), so greys get that small tint in R and B
    assert torch.allclose(grey, torch.full_like(grey, 200 / 255), atol=0.004)
    red = yuv420_to_rgb(full(54, (1, 2, 2)), full(99, (1, 1, 1)), full(255, (1, 1, 1)))
    assert red.max() <= 1.0 and red.min() >= 0.0


def test_chroma_upsampling_matches_dcvc_reference():
    """DCVC converts with scipy.ndimage.zoom(order=1) then BT.709 and a clip to [0, 1]."""
    v = random_video(frames=2, height=36, width=50, seed=3)
    ours = v.rgb().numpy()
    for f in range(2):
        y = v.y[f][None].astype(np.float64) / 255
        uv = np.stack([v.u[f], v.v[f]]).astype(np.float64) / 255
        uv = scipy.ndimage.zoom(uv, (1, 2, 2), order=1)
        cb, cr = uv[0:1], uv[1:2]
        r = y + (2 - 2 * 0.2126) * (cr - 0.5)
        b = y + (2 - 2 * 0.0722) * (cb - 0.5)
        g = (y - 0.2126 * r - 0.0722 * b) / 0.7152
        ref = np.clip(np.concatenate([r, g, b]), 0, 1)
        np.testing.assert_allclose(ours[f], ref, atol=2e-6)


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_cpu_kernel_equals_torch_path(bit_depth):
    v = random_video(frames=2, height=40, width=72, bit_depth=bit_depth, seed=5)
    fast = v.rgb().numpy()
    as_t = lambda a: torch.from_numpy(a.astype(np.int32))
    slow = yuv420_to_rgb(as_t(v.y), as_t(v.u), as_t(v.v), bit_depth).numpy()
    np.testing.assert_allclose(fast, slow, atol=3e-6)


def test_rgb_to_yuv_and_back_is_close():
    v = random_video(frames=1, height=32, width=32, seed=1)
    # smooth content, so 4:2:0 subsampling loses little
    yy, xx = np.mgrid[0:32, 0:32]
    v.y[0] = (xx * 4 + 40).astype(np.uint8)
    v.u[0] = 128 + (yy[::2, ::2] // 2).astype(np.uint8)
    v.v[0] = 120
    again = rgb_to_yuv420(v.rgb())
    assert np.abs(again.y.astype(int) - v.y).max() <= 2


def test_bit_depth_conversion_like_hm():
    v = random_video(frames=1, height=4, width=4, seed=2)
    up = v.to_bit_depth(10)
    np.testing.assert_array_equal(up.y, v.y.astype(np.uint16) << 2)
    np.testing.assert_array_equal(up.to_bit_depth(8).y, v.y)
    ten = Video(
        np.array([[[1021, 1022, 1023, 2]]] * 2, np.uint16).reshape(1, 2, 4), np.zeros((1, 1, 2), np.uint16), np.zeros((1, 1, 2), np.uint16), bit_depth=10
    )
    assert ten.to_bit_depth(8).y.ravel().tolist() == [255, 255, 255, 1, 255, 255, 255, 1]


def test_pad_and_crop_back():
    x = torch.arange(2 * 3 * 70 * 100, dtype=torch.float32).reshape(2, 3, 70, 100)
    p = pad_to_multiple(x, 64)
    assert p.shape == (2, 3, 128, 128)
    assert torch.equal(p[..., 127, 127], x[..., 69, 99])  # replicated from the corner
    assert torch.equal(p[..., :70, 100:], x[..., :, 99:100].expand(-1, -1, -1, 28))
    assert torch.equal(crop(p, 70, 100), x)
    v = random_video(frames=1, height=70, width=100)
    pv = pad_video(v, 64)
    assert (pv.height, pv.width, pv.u.shape[1:]) == (128, 128, (64, 64))
    back = crop_video(pv, 70, 100)
    np.testing.assert_array_equal(back.u, v.u)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("BQTerrace_1920x1080_60.yuv", (1920, 1080, 60.0, None)),
        ("Beauty_1920x1080_120fps_420_8bit_YUV.yuv", (1920, 1080, 120.0, 8)),
        ("videoSRC05_1920x1080_25.yuv", (1920, 1080, 25.0, None)),
        ("foo_832x480_50_10bit.yuv", (832, 480, 50.0, 10)),
        ("foo_1280x720_yuv420p10le.yuv", (1280, 720, None, 10)),
        ("carphone_176x144_29.97.yuv", (176, 144, 29.97, None)),
        ("clip_420_352x288.yuv", (352, 288, None, None)),
    ],
)
def test_parse_yuv_name(name, expected):
    got = parse_yuv_name(name)
    assert (got.width, got.height, got.fps, got.bit_depth) == expected


def test_parse_yuv_name_without_geometry():
    assert parse_yuv_name("clip.yuv") is None


def test_conversion_into_a_reused_buffer():
    v = random_video(frames=3, height=40, width=64, seed=9)
    buf = np.full((3, 3, 40, 64), -1.0, np.float32)
    got = v.rgb(out=buf)
    assert got.data_ptr() == torch.from_numpy(buf).data_ptr()
    np.testing.assert_array_equal(buf, v.rgb().numpy())
    with pytest.raises(ValueError, match="float32 array of shape"):
        v.rgb(out=np.empty((2, 3, 40, 64), np.float32))


@pytest.mark.parametrize("w", [4, 22, 176, 640, 1920])
def test_rgb_kernel_without_gathers_is_bitwise_the_general_one(w):
    """Corner-aligned 2x chroma upsampling as fixed pairs (no index gathers) computes the
    same float32 values as the general interpolation."""
    from bench._kernels import _pairs, _yuv420_to_rgb, corner_aligned_axis

    v = random_video(frames=2, height=6, width=w, seed=w)
    y, u, vv = v.y, v.u, v.v
    rows, cols = corner_aligned_axis(6, 3), corner_aligned_axis(w, w // 2)
    scale = np.float32(1 / 255)
    fast, general = (np.empty((2, 3, 6, w), np.float32) for _ in range(2))
    assert _pairs(w, w // 2)
    _yuv420_to_rgb(y, u, vv, scale, *rows, *cols, True, fast)
    _yuv420_to_rgb(y, u, vv, scale, *rows, *cols, False, general)
    np.testing.assert_array_equal(fast, general)
