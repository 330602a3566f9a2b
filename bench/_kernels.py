"""Fused CPU kernels for the per-frame hot paths: 4:2:0 -> RGB, squared error (PSNR on the
planes and on RGB), MS-SSIM's filtering, Ewarp's warping error.

Written with numba because the natural torch/numpy expressions make several full-size
temporaries per frame and run several times slower than ffmpeg's SIMD code on the same work
(see benchmarks/). ``cache=True`` compiles once per machine. The metric kernels run without
fastmath and sum in fixed orders (or with math.fsum), so their values do not depend on the
CPU's vector width or FMA.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
from numba import config, njit, prange

# numba's own thread pool rather than OpenMP, unless the user chose one: OpenMP's workers
# spin while they wait, and on a shared or busy machine (the benchmark conditions: 2 cores,
# other builds running) that spinning took a fifth more CPU time and a quarter more wall
# time for the default metric set at 1080p. The kernels here are few and coarse (one launch
# per plane batch), so a sleeping pool's wake-up costs nothing measurable. It is taken at
# the first parallel launch; the harness launches kernels from one thread per process.
if "NUMBA_THREADING_LAYER" not in os.environ and config.THREADING_LAYER == "default":
    config.THREADING_LAYER = "workqueue"

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
def _yuv420_to_rgb(y, u, v, scale, ri0, ri1, rw, ci0, ci1, cw, pairs, out):  # pragma: no cover - compiled
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
        if pairs:
            # w == 2*w2: output 0 and w-1 sit on chroma samples 0 and w2-1 and outputs 2m+1,
            # 2m+2 both lie between samples m and m+1 (ci0 = 0, 0, 0, 1, 1, ..., w2-1): the
            # same arithmetic as below without gathers, so it vectorises (2x faster)
            cb[0] = ub[0] + cw[0] * (ub[ci1[0]] - ub[0])
            cr[0] = vb[0] + cw[0] * (vb[ci1[0]] - vb[0])
            for m in range(w2 - 1):
                du = ub[m + 1] - ub[m]
                dv = vb[m + 1] - vb[m]
                cb[2 * m + 1] = ub[m] + cw[2 * m + 1] * du
                cr[2 * m + 1] = vb[m] + cw[2 * m + 1] * dv
                cb[2 * m + 2] = ub[m] + cw[2 * m + 2] * du
                cr[2 * m + 2] = vb[m] + cw[2 * m + 2] * dv
            b0 = ci0[w - 1]
            b1 = ci1[w - 1]
            cb[w - 1] = ub[b0] + cw[w - 1] * (ub[b1] - ub[b0])
            cr[w - 1] = vb[b0] + cw[w - 1] * (vb[b1] - vb[b0])
        else:
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
    _yuv420_to_rgb(y, u, v, scale, *rows, *cols, _pairs(w, u.shape[2]), out)
    return out


@functools.lru_cache(maxsize=16)
def _pairs(n_out: int, n_in: int) -> bool:
    """Whether corner-aligned upsampling n_in -> n_out maps outputs 2m+1 and 2m+2 between
    inputs m and m+1 (true whenever n_out == 2 * n_in; checked on the indices)."""
    i0, i1, _ = corner_aligned_axis(n_out, n_in)
    if n_out != 2 * n_in or n_in < 2:
        return False
    want = np.concatenate([[0], np.arange(n_out - 2) // 2, [n_in - 1]])
    return bool(np.array_equal(i0, want) and np.array_equal(i1[:-1], want[:-1] + 1))


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
def _sq_err_rows(a, b):  # pragma: no cover - compiled
    n, c, h, w = a.shape
    rows = c * h
    out = np.empty((n, rows))
    for r in prange(n * rows):
        f = r // rows
        q = r % rows
        ch = q // h
        i = q % h
        # float64 differences and squares (exact for float32 inputs), eight running sums
        p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0.0
        j = 0
        while j + 8 <= w:
            d0 = np.float64(a[f, ch, i, j]) - np.float64(b[f, ch, i, j])
            d1 = np.float64(a[f, ch, i, j + 1]) - np.float64(b[f, ch, i, j + 1])
            d2 = np.float64(a[f, ch, i, j + 2]) - np.float64(b[f, ch, i, j + 2])
            d3 = np.float64(a[f, ch, i, j + 3]) - np.float64(b[f, ch, i, j + 3])
            d4 = np.float64(a[f, ch, i, j + 4]) - np.float64(b[f, ch, i, j + 4])
            d5 = np.float64(a[f, ch, i, j + 5]) - np.float64(b[f, ch, i, j + 5])
            d6 = np.float64(a[f, ch, i, j + 6]) - np.float64(b[f, ch, i, j + 6])
            d7 = np.float64(a[f, ch, i, j + 7]) - np.float64(b[f, ch, i, j + 7])
            p0 += d0 * d0
            p1 += d1 * d1
            p2 += d2 * d2
            p3 += d3 * d3
            p4 += d4 * d4
            p5 += d5 * d5
            p6 += d6 * d6
            p7 += d7 * d7
            j += 8
        while j < w:
            d0 = np.float64(a[f, ch, i, j]) - np.float64(b[f, ch, i, j])
            p0 += d0 * d0
            j += 1
        out[f, q] = ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))
    return out


def sq_err_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of squared differences of each frame of two (N, C, H, W) float arrays, in float64
    in a fixed order (the same on every CPU)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"two (N, C, H, W) arrays of one shape, got {a.shape} and {b.shape}")
    rows = _sq_err_rows(np.ascontiguousarray(a), np.ascontiguousarray(b))
    return np.array([math.fsum(r) for r in rows])


@njit(cache=True, inline="always")
def _sum8(v, n):  # pragma: no cover - compiled
    """Sum of v[:n] in a fixed order (eight running sums, then a fixed tree): vectorisable
    without fastmath, and the same value whatever the CPU's vector width."""
    p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0.0
    j = 0
    while j + 8 <= n:
        p0 += v[j]
        p1 += v[j + 1]
        p2 += v[j + 2]
        p3 += v[j + 3]
        p4 += v[j + 4]
        p5 += v[j + 5]
        p6 += v[j + 6]
        p7 += v[j + 7]
        j += 8
    while j < n:
        p0 += v[j]
        j += 1
    return ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))


@njit(cache=True, inline="always")
def _taps11(out, s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, step, win, n):  # pragma: no cover - compiled
    """out[j] = sum_t win[t] * s_t[j + t*step], t = 0..10 in order (one expression per
    output: no stores between taps, and it vectorises without reassociating)."""
    g0, g1, g2, g3, g4, g5 = win[0], win[1], win[2], win[3], win[4], win[5]
    g6, g7, g8, g9, g10 = win[6], win[7], win[8], win[9], win[10]
    o1, o2, o3, o4, o5 = step, 2 * step, 3 * step, 4 * step, 5 * step
    o6, o7, o8, o9, o10 = 6 * step, 7 * step, 8 * step, 9 * step, 10 * step
    for j in range(n):
        acc = g0 * s0[j] + g1 * s1[j + o1]
        acc = acc + g2 * s2[j + o2]
        acc = acc + g3 * s3[j + o3]
        acc = acc + g4 * s4[j + o4]
        acc = acc + g5 * s5[j + o5]
        acc = acc + g6 * s6[j + o6]
        acc = acc + g7 * s7[j + o7]
        acc = acc + g8 * s8[j + o8]
        acc = acc + g9 * s9[j + o9]
        out[j] = acc + g10 * s10[j + o10]


@njit(cache=True, inline="always")
def _halve_row(row, w, w2, out, bottom, single):  # pragma: no cover - compiled
    """One input row's part of the 2x2 means: the top row's pair sums (kept in out), then
    the bottom row's added and the quarter taken; ``single``: an odd last row, its own
    bottom row."""
    if not bottom:
        for j in range(w2):
            out[j] = row[2 * j] + row[min(2 * j + 1, w - 1)]
    if bottom or single:
        for j in range(w2):
            out[j] = (out[j] + (row[2 * j] + row[min(2 * j + 1, w - 1)])) * 0.25


@njit(cache=True, inline="always")
def _moments_row(xr, yr, w, prod):  # pragma: no cover - compiled
    """One input row's five local-moment products (x, y, x², y², xy), in float64."""
    for j in range(w):
        a = np.float64(xr[j])
        c = np.float64(yr[j])
        prod[0, j] = a
        prod[1, j] = c
        prod[2, j] = a * a
        prod[3, j] = c * c
        prod[4, j] = a * c


@njit(cache=True, inline="always")
def _vertical(acc, ring, i, win, wo):  # pragma: no cover - compiled
    """Output row ``i``'s five moments: the vertical 11-tap sums over the ring of filtered
    rows (ring slot ``r % 11`` holds input row r), taps in order t = 0..10."""
    k = 11
    for m in range(5):
        _taps11(
            acc[m],
            ring[i % k, m],
            ring[(i + 1) % k, m],
            ring[(i + 2) % k, m],
            ring[(i + 3) % k, m],
            ring[(i + 4) % k, m],
            ring[(i + 5) % k, m],
            ring[(i + 6) % k, m],
            ring[(i + 7) % k, m],
            ring[(i + 8) % k, m],
            ring[(i + 9) % k, m],
            ring[(i + 10) % k, m],
            0,
            win,
            wo,
        )


@njit(cache=True, inline="always")
def _ssim_row(acc, c1, c2, sv, cv, wo):  # pragma: no cover - compiled
    """The SSIM (``sv``) and contrast-structure (``cv``) maps of one output row from its
    five moments."""
    for j in range(wo):
        mu1 = acc[0, j]
        mu2 = acc[1, j]
        s11 = acc[2, j] - mu1 * mu1
        s22 = acc[3, j] - mu2 * mu2
        s12 = acc[4, j] - mu1 * mu2
        cs = (2.0 * s12 + c2) / (s11 + s22 + c2)
        cv[j] = cs
        sv[j] = (2.0 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs


@njit(parallel=True, fastmath=False, cache=True)
def _ssim_cs_rows(x, y, win, c1, c2, strip, hx, hy, halve):  # pragma: no cover - compiled
    """Per-row sums of the SSIM and contrast-structure maps, 'valid' 11-tap Gaussian windows.

    x, y: (B, H, W) float32 or float64, computed in float64. Returns two (B, H-10) arrays of
    row sums. Each task takes a strip of output rows of one plane: every input row is
    filtered horizontally (the five local moments) into a ring of the last 11, and each
    output row is then filtered vertically from the ring and put through the SSIM formula;
    everything a task touches stays in the core's cache. Each tap sum runs t = 0..10 in
    order, as a direct convolution does, and fastmath is off: the values do not depend on
    the CPU (vector width, FMA).

    With ``halve``, the 2x2 means of x and y (the next scale) are written to hx, hy from the
    rows as they pass, as :func:`halve` computes them: no second pass over the frame.
    ``strip`` must be even, so that no strip starts between the two rows of a mean.
    """
    b, h, w = x.shape
    k = 11
    ho = h - k + 1
    wo = w - k + 1
    w2 = (w + 1) // 2
    ns = (ho + strip - 1) // strip
    ssim_rows = np.zeros((b, ho))
    cs_rows = np.zeros((b, ho))
    for task in prange(b * ns):
        f = task // ns
        r0 = (task % ns) * strip
        r1 = min(r0 + strip, ho)
        own = h if r1 == ho else r1  # input rows [r0, own) are this task's to halve
        ring = np.empty((k, 5, wo))
        prod = np.empty((5, w))
        acc = np.empty((5, wo))
        sv = np.empty(wo)
        cv = np.empty(wo)
        for rr in range(r0, r1 + k - 1):
            _moments_row(x[f, rr], y[f, rr], w, prod)
            if halve and rr < own:
                _halve_row(prod[0], w, w2, hx[f, rr // 2], rr % 2 == 1, rr == h - 1 and rr % 2 == 0)
                _halve_row(prod[1], w, w2, hy[f, rr // 2], rr % 2 == 1, rr == h - 1 and rr % 2 == 0)
            slot = rr % k
            for m in range(5):
                p = prod[m]
                _taps11(ring[slot, m], p, p, p, p, p, p, p, p, p, p, p, 1, win, wo)
            i = rr - (k - 1)  # the output row whose 11 input rows are now in the ring
            if i < r0:
                continue
            _vertical(acc, ring, i, win, wo)
            _ssim_row(acc, c1, c2, sv, cv, wo)
            ssim_rows[f, i] = _sum8(sv, wo)
            cs_rows[f, i] = _sum8(cv, wo)
    return ssim_rows, cs_rows


def ssim_cs(
    x: np.ndarray, y: np.ndarray, win: np.ndarray, c1: float, c2: float, *, halves: tuple[np.ndarray, np.ndarray] | None = None, strip: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSIM and mean contrast-structure of each (H, W) plane of (B, H, W) float32 or
    float64 arrays (computed in float64), with an 11-tap window.

    ``halves``: two float64 arrays of :func:`halve`'s output shape that receive the 2x2
    means of x and y, the same values halve() gives, computed in the same pass."""
    if win.shape != (11,):
        raise ValueError(f"the SSIM kernel takes an 11-tap window, got {win.shape}")
    if strip < 2 or strip % 2:
        raise ValueError(f"strip must be even, got {strip}")
    if min(x.shape[1:]) < 11:
        raise ValueError(f"planes of {x.shape[2]}x{x.shape[1]} are smaller than the 11x11 window")
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
    if halves is None:
        hx = hy = np.empty((0, 0, 0))
    else:
        b, h, w = x.shape
        shape = (b, (h + 1) // 2, (w + 1) // 2)
        hx, hy = halves
        for a in halves:
            if a.shape != shape or a.dtype != np.float64 or not a.flags.c_contiguous:
                raise ValueError(f"halves must be C-contiguous float64 arrays of shape {shape}")
    ssim_rows, cs_rows = _ssim_cs_rows(x, y, np.ascontiguousarray(win, dtype=np.float64), c1, c2, strip, hx, hy, halves is not None)
    n = ssim_rows.shape[1] * (x.shape[2] - win.shape[0] + 1)
    return ssim_rows.sum(axis=1) / n, cs_rows.sum(axis=1) / n


@njit(parallel=True, fastmath=False, cache=True)
def _halve(x, out):  # pragma: no cover - compiled
    b, h, w = x.shape
    h2 = (h + 1) // 2
    w2 = (w + 1) // 2
    for r in prange(b * h2):
        f = r // h2
        i0 = 2 * (r % h2)
        i1 = min(i0 + 1, h - 1)
        for j in range(w2):
            j0 = 2 * j
            j1 = min(j0 + 1, w - 1)
            top = np.float64(x[f, i0, j0]) + np.float64(x[f, i0, j1])
            bottom = np.float64(x[f, i1, j0]) + np.float64(x[f, i1, j1])
            out[f, r % h2, j] = (top + bottom) * 0.25
    return out


def halve(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """2x2 means of each plane of (B, H, W) float32/float64 -> float64; an odd last row or
    column is averaged with itself (replicate padding, as MS-SSIM's downsampling does).
    ``out``: a reusable (B, ceil(H/2), ceil(W/2)) float64 array (a fresh 50 MB array costs
    more in page faults than the averaging)."""
    b, h, w = x.shape
    shape = (b, (h + 1) // 2, (w + 1) // 2)
    if out is None:
        out = np.empty(shape)
    elif out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float64 array of shape {shape}")
    _halve(np.ascontiguousarray(x), out)
    return out


@njit(cache=True, inline="always")
def _bilinear(img, c, x0, x1, y0, y1, nw, ne, sw, se):  # pragma: no cover - compiled
    return nw * img[y0, x0, c] + ne * img[y0, x1, c] + sw * img[y1, x0, c] + se * img[y1, x1, c]


@njit(cache=True, inline="always")
def _bilinear_plane(img, x0, x1, y0, y1, nw, ne, sw, se):  # pragma: no cover - compiled
    return nw * img[y0, x0] + ne * img[y0, x1] + sw * img[y1, x0] + se * img[y1, x1]


@njit(parallel=True, fastmath=False, cache=True)
def _warp_error_rows(prev, cur, fw, bw):  # pragma: no cover - compiled
    """Per-row squared warping error and count of unoccluded samples (see
    :func:`warp_error_cpu`); flows indexed [y, x, component]."""
    _, h, w = prev.shape
    sse = np.zeros(h)
    count = np.zeros(h, np.int64)
    for i in prange(h):
        s = 0.0
        n = 0
        for j in range(w):
            u = np.float64(fw[i, j, 0])
            v = np.float64(fw[i, j, 1])
            # sample position x + F(x), border-clamped; bilinear weights as grid_sample's
            px = min(max(j + u, 0.0), w - 1.0)
            py = min(max(i + v, 0.0), h - 1.0)
            x0 = int(np.floor(px))
            y0 = int(np.floor(py))
            x1 = min(x0 + 1, w - 1)
            y1 = min(y0 + 1, h - 1)
            ax = px - x0
            ay = py - y0
            nw = (1.0 - ax) * (1.0 - ay)
            ne = ax * (1.0 - ay)
            sw = (1.0 - ax) * ay
            se = ax * ay
            # forward-backward consistency: F + B(x + F) should be about zero
            bwu = _bilinear(bw, 0, x0, x1, y0, y1, nw, ne, sw, se)
            bwv = _bilinear(bw, 1, x0, x1, y0, y1, nw, ne, sw, se)
            mf = u * u + v * v
            su = u + bwu
            sv = v + bwv
            inconsistent = su * su + sv * sv > 0.01 * (mf + (bwu * bwu + bwv * bwv)) + 0.5
            # motion boundary: forward differences of F (zero on the last row/column)
            jn = min(j + 1, w - 1)
            i_n = min(i + 1, h - 1)
            dxu = u - fw[i, jn, 0]
            dxv = v - fw[i, jn, 1]
            dyu = u - fw[i_n, j, 0]
            dyv = v - fw[i_n, j, 1]
            boundary = dxu * dxu + dyu * dyu + dxv * dxv + dyv * dyv > 0.01 * mf + 0.002
            # no branch on the mask: it is as good as random on real flow, and mispredicted
            # branches cost more than always sampling
            keep = 0.0 if (inconsistent or boundary) else 1.0
            e = 0.0
            for c in range(3):
                d = _bilinear_plane(cur[c], x0, x1, y0, y1, nw, ne, sw, se) - prev[c, i, j]
                e += d * d
            s += keep * e
            n += 3 * int(keep)
        sse[i] = s
        count[i] = n
    return sse, count


def warp_error_cpu(prev: np.ndarray, cur: np.ndarray, fw: np.ndarray, bw: np.ndarray) -> float:
    """Lai et al.'s warping error of one frame pair in one pass (bench.metrics.temporal has
    the definition and the torch version): prev, cur (3, H, W) RGB; fw, bw the flows t-1 -> t
    and t -> t-1 in pixels, as OpenCV's (H, W, 2) or (2, H, W). Positions, weights and sums
    in float64, rows added with math.fsum: the same value on every CPU."""
    h, w = prev.shape[1:]
    flows = []
    for f in (fw, bw):
        if f.shape == (2, h, w):
            f = f.transpose(1, 2, 0)  # a strided view, no copy
        if f.shape != (h, w, 2):
            raise ValueError(f"a flow for {w}x{h} frames must be ({h}, {w}, 2) or (2, {h}, {w}), got {f.shape}")
        flows.append(f)
    sse, count = _warp_error_rows(np.ascontiguousarray(prev), np.ascontiguousarray(cur), *flows)
    n = int(count.sum())
    return math.fsum(sse) / (n if n > 0 else prev.size)
