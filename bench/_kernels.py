"""Fused CPU kernels for the two per-frame hot paths: 4:2:0 -> RGB and squared error.

Written with numba because the natural torch/numpy expressions make several full-size
temporaries per frame and run ~7x slower than ffmpeg's SIMD code on the same work; these
single-pass loops stay within ~1.5x of it (see benchmarks/). ``cache=True`` compiles once
per machine.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

# BT.709: R = Y + (2-2Kr)Cr, B = Y + (2-2Kb)Cb, G = (Y - Kr R - Kb B)/Kg
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_RV = np.float32(2 - 2 * _KR)
_BU = np.float32(2 - 2 * _KB)
_GU = np.float32(_KB * (2 - 2 * _KB) / _KG)
_GV = np.float32(_KR * (2 - 2 * _KR) / _KG)


@functools.lru_cache(maxsize=16)
def corner_aligned_axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight for linear interpolation with aligned corners.

    Output sample i sits at input position i*(n_in-1)/(n_out-1), which is what
    ``scipy.ndimage.zoom(order=1)`` (DCVC) and ``F.interpolate(align_corners=True)`` do.
    """
    step = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    pos = np.arange(n_out, dtype=np.float64) * step
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


@njit(parallel=True, fastmath=True, cache=True)
def _yuv420_to_rgb(y, u, v, scale, ri0, ri1, rw, ci0, ci1, cw, out):  # pragma: no cover - compiled
    n, h, w = y.shape
    w2 = u.shape[2]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    half = np.float32(0.5)
    for k in prange(n * h):
        f = k // h
        i = k % h
        a0 = ri0[i]
        a1 = ri1[i]
        wa = rw[i]
        wa0 = one - wa
        # Blend the two chroma source rows vertically at half width, then interpolate
        # horizontally: contiguous loops that vectorise, no per-pixel 4-tap gathers.
        ub = np.empty(w2, np.float32)
        vb = np.empty(w2, np.float32)
        for j in range(w2):
            ub[j] = (wa0 * u[f, a0, j] + wa * u[f, a1, j]) * scale - half
            vb[j] = (wa0 * v[f, a0, j] + wa * v[f, a1, j]) * scale - half
        cb = np.empty(w, np.float32)
        cr = np.empty(w, np.float32)
        for j in range(w):
            b0 = ci0[j]
            b1 = ci1[j]
            wb = cw[j]
            cb[j] = ub[b0] + wb * (ub[b1] - ub[b0])
            cr[j] = vb[b0] + wb * (vb[b1] - vb[b0])
        r_row = out[f, 0, i]
        g_row = out[f, 1, i]
        b_row = out[f, 2, i]
        for j in range(w):
            yy = y[f, i, j] * scale
            r_row[j] = min(max(yy + _RV * cr[j], zero), one)
            g_row[j] = min(max(yy - _GU * cb[j] - _GV * cr[j], zero), one)
            b_row[j] = min(max(yy + _BU * cb[j], zero), one)


def yuv420_to_rgb_cpu(y: np.ndarray, u: np.ndarray, v: np.ndarray, bit_depth: int, out: np.ndarray | None = None) -> np.ndarray:
    """``out``: a reusable (N,3,H,W) float32 buffer; fresh 100 MB arrays per batch cost
    page faults comparable to the conversion itself."""
    n, h, w = y.shape
    if out is None:
        out = np.empty((n, 3, h, w), np.float32)
    elif out.shape != (n, 3, h, w) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {(n, 3, h, w)}")
    rows = corner_aligned_axis(h, u.shape[1])
    cols = corner_aligned_axis(w, u.shape[2])
    scale = np.float32(1.0 / ((1 << bit_depth) - 1))
    _yuv420_to_rgb(y, u, v, scale, *rows, *cols, out)
    return out


@njit(parallel=True, cache=True)
def _sse_rows(a, b):  # pragma: no cover - compiled
    n, h, w = a.shape
    acc = np.zeros(n * h, np.int64)
    for k in prange(n * h):
        f = k // h
        i = k % h
        s = np.int64(0)
        for j in range(w):
            d = np.int64(a[f, i, j]) - np.int64(b[f, i, j])
            s += d * d
        acc[k] = s
    return acc


def sse_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer sum of squared differences of each frame of two (N,H,W) code arrays."""
    n, h, _ = a.shape
    return _sse_rows(a, b).reshape(n, h).sum(axis=1)


@njit(parallel=True, fastmath=False, cache=True)
def _ssim_cs_rows(x, y, win, c1, c2):  # pragma: no cover - compiled
    """Per-row sums of the SSIM and contrast-structure maps, 'valid' Gaussian windows.

    x, y: (B, H, W) float64. Returns two (B, H-k+1) arrays of row sums. The five local
    moments are filtered horizontally into a buffer, then vertically while the SSIM formula
    is evaluated, so no full-size map of any moment is ever written twice.
    """
    b, h, w = x.shape
    k = win.shape[0]
    ho = h - k + 1
    wo = w - k + 1
    hx = np.empty((b, h, 5, wo))
    for r in prange(b * h):
        f = r // h
        i = r % h
        for j in range(wo):
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            s4 = 0.0
            for t in range(k):
                a = x[f, i, j + t]
                c = y[f, i, j + t]
                g = win[t]
                s0 += g * a
                s1 += g * c
                s2 += g * a * a
                s3 += g * c * c
                s4 += g * a * c
            hx[f, i, 0, j] = s0
            hx[f, i, 1, j] = s1
            hx[f, i, 2, j] = s2
            hx[f, i, 3, j] = s3
            hx[f, i, 4, j] = s4
    ssim_rows = np.zeros((b, ho))
    cs_rows = np.zeros((b, ho))
    for r in prange(b * ho):
        f = r // ho
        i = r % ho
        acc = np.zeros((5, wo))
        for t in range(k):
            g = win[t]
            for m in range(5):
                for j in range(wo):
                    acc[m, j] += g * hx[f, i + t, m, j]
        ss = 0.0
        cc = 0.0
        for j in range(wo):
            mu1 = acc[0, j]
            mu2 = acc[1, j]
            s11 = acc[2, j] - mu1 * mu1
            s22 = acc[3, j] - mu2 * mu2
            s12 = acc[4, j] - mu1 * mu2
            cs = (2.0 * s12 + c2) / (s11 + s22 + c2)
            cc += cs
            ss += (2.0 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs
        ssim_rows[f, i] = ss
        cs_rows[f, i] = cc
    return ssim_rows, cs_rows


def ssim_cs(x: np.ndarray, y: np.ndarray, win: np.ndarray, c1: float, c2: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSIM and mean contrast-structure of each (H, W) plane of (B, H, W) float64 arrays."""
    ssim_rows, cs_rows = _ssim_cs_rows(np.ascontiguousarray(x), np.ascontiguousarray(y), win, c1, c2)
    n = ssim_rows.shape[1] * (x.shape[2] - win.shape[0] + 1)
    return ssim_rows.sum(axis=1) / n, cs_rows.sum(axis=1) / n
