"""Filter features of a CT patch, computed on the training device (and a scipy reference).

The previous pipeline ran these scipy filters in DataLoader workers and starved the GPU;
here they run in torch on the training device, in ``VesuviusTask.to_device``: every
Gaussian (derivative) is three separable 1-D passes, each pass a few dense matmuls with
the banded filter matrix (reflect padding folded in), and passes are shared between the
channels of one sigma (see ``gaussian_derivatives``).

Channels (``FEATURES``, in this order; ``compute_features(x, channels=...)`` selects). Each
is one :class:`Channel` record in ``CHANNELS`` (the derivatives it reads, how they combine,
its scipy reference, its normalisation): adding a channel is adding one record.

    intensity                  the input, x in [0, 1]
    log_sigma1                 scipy.ndimage.gaussian_laplace(x, 1)
    log_sigma2                 scipy.ndimage.gaussian_laplace(x, 2)
    gradient_magnitude_sigma1  scipy.ndimage.gaussian_gradient_magnitude(x, 1)
    sheetness_sigma1.5         largest-magnitude eigenvalue of the Gaussian Hessian at 1.5, sign
                               kept (bright plates give a strongly negative value across the plate)
    dog_sigma1.5_3             gaussian_filter(x, 1.5) - gaussian_filter(x, 3): band-pass near the
                               sheet spacing

scipy's definitions, followed exactly: every Gaussian (derivative) is a separable
correlation with ``scipy.ndimage``'s kernel (radius ``int(4 * sigma + 0.5)``, the order-0
kernel normalised to sum 1, derivatives as polynomials times it), ``mode="reflect"``
(half-sample symmetric: d c b a | a b c d | d c b a). gaussian_laplace = sum of the three
second derivatives; gaussian_gradient_magnitude = sqrt of the sum of squared first
derivatives. The torch version reproduces the padding too, so it matches everywhere up to
float32 rounding; the contract is 1e-3 absolute at voxels >= 4*sigma from the border.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch
from scipy import ndimage

from core.errors import UserError

TRUNCATE = 4.0


def context_margin(channels: tuple[str, ...] | list[str] | None = None) -> int:
    """Voxels of context a patch needs on each side so every feature is exact at its edge
    (``channels`` default: all of FEATURES)."""
    sigmas = [s for name in (FEATURES if channels is None else channels) for s in CHANNELS[name].derivatives]
    return max([_radius(s) for s in sigmas], default=0)


def check_channels(channels) -> tuple[str, ...]:
    """Validate channel names (order kept); raises UserError naming the bad one."""
    channels = tuple(channels)
    for name in channels:
        if name not in CHANNELS:
            raise UserError(f"features.channels: unknown channel {name!r}; valid: {', '.join(CHANNELS)}")
    if not channels:
        raise UserError("features.channels is empty; name at least one of: " + ", ".join(CHANNELS))
    return channels


def _radius(sigma: float) -> int:
    return int(TRUNCATE * float(sigma) + 0.5)


@lru_cache(maxsize=None)
def gaussian_kernel1d(sigma: float, order: int) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian (derivative) kernel, float64, length 2*radius+1.

    scipy correlates with the reversed kernel (i.e. convolves); ``_gaussian_taps`` returns
    the taps in correlation order.
    """
    radius = _radius(sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x * x / sigma**2)
    phi /= phi.sum()
    if order == 0:
        return phi
    if order == 1:
        return -x / sigma**2 * phi
    if order == 2:
        return (x * x / sigma**4 - 1.0 / sigma**2) * phi
    raise ValueError(f"order {order} not supported")


def _gaussian_taps(sigma: float, order: int) -> np.ndarray:
    return gaussian_kernel1d(sigma, order)[::-1].copy()


@lru_cache(maxsize=64)
def _axis_operator(n: int, sigma: float, order: int) -> np.ndarray:
    """(n, n) float64 matrix M with (M @ v) = gaussian_filter1d(v, sigma, order, mode="reflect").

    The reflect padding is folded into the matrix, so one matmul is the whole 1-D pass. A dense
    n x n product does more multiply-adds than a banded convolution, but BLAS runs it ~50x
    faster per flop than torch's depthwise conv3d on CPU (and it is the fast path on GPUs too).
    """
    taps = _gaussian_taps(sigma, order)  # correlation order, length 2r+1
    radius = len(taps) // 2
    period = 2 * n
    m = np.zeros((n, n))
    for i in range(n):
        j = np.remainder(np.arange(i - radius, i + radius + 1), period)
        j = np.where(j >= n, period - 1 - j, j)  # scipy "reflect": d c b a | a b c d | d c b a
        np.add.at(m[i], j, taps)
    return m


BLOCK = 32  # output rows per matmul block: small enough to skip most of the banded operator's zeros


@lru_cache(maxsize=256)
def _block_operators(n: int, sigma: float, order: int) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The operator of one 1-D pass cut into row blocks: [(row_start, row_end, col_start, col_end, block)].

    Output rows [row_start, row_end) depend only on input rows [col_start, col_end) (the band
    plus reflection), so each block is a small dense (rows, cols) matrix.
    """
    full = _axis_operator(n, sigma, order)
    blocks = []
    for r0 in range(0, n, BLOCK):
        r1 = min(n, r0 + BLOCK)
        cols = np.flatnonzero(np.any(full[r0:r1] != 0, axis=0))
        c0, c1 = int(cols.min()), int(cols.max()) + 1
        blocks.append((r0, r1, c0, c1, np.ascontiguousarray(full[r0:r1, c0:c1])))
    return blocks


_DEVICE_BLOCKS: dict[tuple, list[tuple[int, int, int, int, torch.Tensor]]] = {}


def _device_blocks(n: int, sigma: float, order: int, device: torch.device, dtype: torch.dtype):
    key = (n, sigma, order, str(device), dtype, BLOCK)
    if key not in _DEVICE_BLOCKS:  # a few dozen small matrices per patch size, kept on the device
        _DEVICE_BLOCKS[key] = [(r0, r1, c0, c1, torch.from_numpy(b).to(device=device, dtype=dtype))
                               for r0, r1, c0, c1, b in _block_operators(n, sigma, order)]
    return _DEVICE_BLOCKS[key]


def _filter_leading_axis(v: torch.Tensor, sigma: float, order: int) -> torch.Tensor:
    """Filter a contiguous (n, a, b) tensor along its first axis; returns it as (a, b, n), contiguous.

    Each row block is one 2-D matmul, (a*b, cols) @ (cols, rows), whose transposed input and
    strided output BLAS handles natively: no copies. Rotating the axes on every pass means
    three passes bring a (D, H, W) volume back to (D, H, W), each filtering the leading axis.
    """
    n, a, b = v.shape
    x = v.reshape(n, a * b)
    out = torch.empty((a * b, n), device=v.device, dtype=v.dtype)
    for r0, r1, c0, c1, block in _device_blocks(n, sigma, order, v.device, v.dtype):
        torch.mm(x[c0:c1].T, block.T, out=out[:, r0:r1])
    return out.view(a, b, n)


def _filter_axis(sources: list[torch.Tensor], axis: int, outputs: list[tuple[int, float, int]]) -> list[torch.Tensor]:
    """One separable pass: output k filters sources[outputs[k][0]] along its leading axis
    (which is volume axis ``axis`` after ``axis`` earlier rotations) with (sigma, order)."""
    return [_filter_leading_axis(sources[s], sigma, order) for s, sigma, order in outputs]


def gaussian_derivatives(vol: torch.Tensor, sigma: float, orders: list[tuple[int, int, int]]) -> list[torch.Tensor]:
    """scipy.ndimage.gaussian_filter(vol, sigma, order=o, mode="reflect") for each o in ``orders``.

    vol: (D, H, W) float; returns one (D, H, W) tensor per order. Shares passes between orders
    with a common prefix (D first, then H, then W), so e.g. the six Hessian entries cost
    3 + 6 + 7 one-dimensional passes instead of 18.
    """
    current = [vol]
    prefixes: list[tuple[int, ...]] = [()]
    for axis in range(3):
        wanted = sorted({tuple(o[: axis + 1]) for o in orders})
        outputs = [(prefixes.index(p[:-1]), sigma, p[-1]) for p in wanted]
        current = _filter_axis(current, axis, outputs)
        prefixes = wanted
    return [current[prefixes.index(tuple(o))] for o in orders]


def largest_magnitude_eigenvalue(hxx, hyy, hzz, hxy, hxz, hyz, chunk: int = 1 << 17) -> torch.Tensor:
    """Per-voxel eigenvalue of largest magnitude (sign kept) of a symmetric 3x3 matrix field.

    Each argument: the same-shape float tensor of one Hessian entry. Closed form (trigonometric
    solution of the characteristic cubic, shifted by the mean eigenvalue and scaled so the cubic
    is well conditioned), evaluated in chunks of ``chunk`` voxels so the ~40 elementwise ops run
    in cache rather than streaming the whole field through memory each time.
    """
    shape = hxx.shape
    entries = [t.reshape(-1) for t in (hxx, hyy, hzz, hxy, hxz, hyz)]
    out = torch.empty_like(entries[0])
    for start in range(0, out.numel(), chunk):
        a, b, c, d, e, f = (t[start : start + chunk] for t in entries)
        q = (a + b + c) / 3
        a, b, c = a - q, b - q, c - q
        p = torch.sqrt((a * a + b * b + c * c + 2 * (d * d + e * e + f * f)) / 6).clamp_min(1e-20)
        inv = 1.0 / p
        a, b, c, d, e, f = a * inv, b * inv, c * inv, d * inv, e * inv, f * inv
        half_det = 0.5 * (a * (b * c - f * f) - d * (d * c - f * e) + e * (d * f - b * e))
        phi = torch.acos(half_det.clamp(-1.0, 1.0)) / 3
        lam_max = q + 2 * p * torch.cos(phi)
        lam_min = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
        out[start : start + chunk] = torch.where(lam_min.abs() > lam_max.abs(), lam_min, lam_max)
    return out.view(shape)


_HESSIAN_ORDERS = [(2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 0), (1, 0, 1), (0, 1, 1)]
_LAPLACE_ORDERS = [(2, 0, 0), (0, 2, 0), (0, 0, 2)]
_GRADIENT_ORDERS = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
Derivatives = dict[tuple[float, tuple[int, int, int]], torch.Tensor]  # (sigma, order) -> (D, H, W)


@dataclass(frozen=True)
class Channel:
    """One feature channel, everything about it in one place.

    derivatives  {sigma: [orders]}: the Gaussian derivatives it reads (shared between channels:
                 one derivative tree per sigma; the largest sigma sets the context margin)
    combine      (derivatives, volume) -> the (D, H, W) channel, in torch on the device
    reference    (volume float32, scipy keyword args) -> the same channel with scipy.ndimage
    normalization (offset, scale): the model sees (feature - offset) * scale. Derivative
                 features are scale-normalised (sigma^order) and brought to unit-ish spread
                 on CT-like data in [0, 1]; fixed constants, not per-patch statistics, keep
                 sliding-window inference consistent with training.
    """

    name: str
    derivatives: dict[float, list[tuple[int, int, int]]]
    combine: Callable[[Derivatives, torch.Tensor], torch.Tensor]
    reference: Callable[[np.ndarray, dict[str, Any]], np.ndarray]
    normalization: tuple[float, float]


def _sum(g: Derivatives, sigma: float, orders: list[tuple[int, int, int]]) -> torch.Tensor:
    return torch.stack([g[(sigma, o)] for o in orders]).sum(0)


def _gradient_magnitude(g: Derivatives, sigma: float) -> torch.Tensor:
    return torch.sqrt(sum(g[(sigma, o)] ** 2 for o in _GRADIENT_ORDERS))


def _sheetness_reference(vol: np.ndarray, kw: dict[str, Any], sigma: float = 1.5) -> np.ndarray:
    h = {o: ndimage.gaussian_filter(vol, sigma, order=o, **kw) for o in _HESSIAN_ORDERS}
    hxx, hyy, hzz = h[(2, 0, 0)], h[(0, 2, 0)], h[(0, 0, 2)]
    hxy, hxz, hyz = h[(1, 1, 0)], h[(1, 0, 1)], h[(0, 1, 1)]
    mats = np.stack([np.stack([hxx, hxy, hxz], -1), np.stack([hxy, hyy, hyz], -1),
                     np.stack([hxz, hyz, hzz], -1)], -2)  # (D, H, W, 3, 3)
    eig = np.linalg.eigvalsh(mats)  # ascending
    lo, hi = eig[..., 0], eig[..., 2]
    return np.where(np.abs(lo) > np.abs(hi), lo, hi)


CHANNELS: dict[str, Channel] = {c.name: c for c in (
    Channel("intensity", {}, lambda g, vol: vol, lambda vol, kw: vol, (0.5, 4.0)),
    Channel("log_sigma1", {1.0: _LAPLACE_ORDERS}, lambda g, vol: _sum(g, 1.0, _LAPLACE_ORDERS),
            lambda vol, kw: ndimage.gaussian_laplace(vol, 1.0, **kw), (0.0, 8.0)),
    Channel("log_sigma2", {2.0: _LAPLACE_ORDERS}, lambda g, vol: _sum(g, 2.0, _LAPLACE_ORDERS),
            lambda vol, kw: ndimage.gaussian_laplace(vol, 2.0, **kw), (0.0, 16.0)),
    Channel("gradient_magnitude_sigma1", {1.0: _GRADIENT_ORDERS}, lambda g, vol: _gradient_magnitude(g, 1.0),
            lambda vol, kw: ndimage.gaussian_gradient_magnitude(vol, 1.0, **kw), (0.0, 8.0)),
    Channel("sheetness_sigma1.5", {1.5: _HESSIAN_ORDERS},
            lambda g, vol: largest_magnitude_eigenvalue(*(g[(1.5, o)] for o in _HESSIAN_ORDERS)),
            _sheetness_reference, (0.0, 8.0)),
    Channel("dog_sigma1.5_3", {1.5: [(0, 0, 0)], 3.0: [(0, 0, 0)]},
            lambda g, vol: g[(1.5, (0, 0, 0))] - g[(3.0, (0, 0, 0))],
            lambda vol, kw: ndimage.gaussian_filter(vol, 1.5, **kw) - ndimage.gaussian_filter(vol, 3.0, **kw),
            (0.0, 8.0)),
)}
FEATURES: tuple[str, ...] = tuple(CHANNELS)  # the default channel set, in this order


def compute_features(x: torch.Tensor, channels=FEATURES) -> torch.Tensor:
    """Feature channels of a batch of patches, on x's device.

    x: (N, 1, D, H, W) float in [0, 1]; returns (N, C, D, H, W) float32 in ``channels`` order.
    Work is shared between channels (one Gaussian-derivative tree per sigma).
    """
    channels = check_channels(channels)
    if x.ndim != 5 or x.shape[1] != 1:
        raise ValueError(f"compute_features expects (N, 1, D, H, W), got {tuple(x.shape)}")
    # matmuls must stay fp32; autocast knows only real devices (not "meta", used for memory estimates)
    autocast_device = x.device.type if x.device.type in ("cuda", "cpu") else "cpu"
    with torch.autocast(device_type=autocast_device, enabled=False):
        return _compute_features(x.float(), channels)


def _compute_features(x: torch.Tensor, channels: tuple[str, ...]) -> torch.Tensor:
    # orders needed per sigma, collected so each sigma's derivative tree runs once
    need: dict[float, list[tuple[int, int, int]]] = {}
    for name in channels:
        for sigma, orders in CHANNELS[name].derivatives.items():
            need.setdefault(sigma, []).extend(orders)
    out = torch.empty((x.shape[0], len(channels)) + tuple(x.shape[2:]), device=x.device, dtype=torch.float32)
    # one volume at a time: every matmul then works on contiguous (D, H, W) data without copies
    for i in range(x.shape[0]):
        vol = x[i, 0]
        g: Derivatives = {}
        for sigma, orders in need.items():
            orders = list(dict.fromkeys(orders))
            g.update({(sigma, o): t for o, t in zip(orders, gaussian_derivatives(vol, sigma, orders))})
        for c, name in enumerate(channels):
            out[i, c] = CHANNELS[name].combine(g, vol)
    return out


def normalize_features(feats: torch.Tensor, channels=FEATURES) -> torch.Tensor:
    """(N, C, D, H, W) raw features -> model input, with each channel's fixed normalization."""
    offset = torch.tensor([CHANNELS[c].normalization[0] for c in channels], device=feats.device, dtype=feats.dtype)
    scale = torch.tensor([CHANNELS[c].normalization[1] for c in channels], device=feats.device, dtype=feats.dtype)
    return (feats - offset.view(1, -1, 1, 1, 1)) * scale.view(1, -1, 1, 1, 1)


def compute_features_reference(vol: np.ndarray, channels=FEATURES) -> np.ndarray:
    """The scipy.ndimage version (mode="reflect", truncate 4.0), for tests and benchmarks.

    vol: (D, H, W) float in [0, 1]; returns (C, D, H, W) float32. Filters run in float32 as the
    old worker pipeline did (scipy accumulates in float64 internally).
    """
    channels = check_channels(channels)
    vol = np.asarray(vol, dtype=np.float32)
    kw = dict(mode="reflect", truncate=TRUNCATE)
    return np.stack([CHANNELS[name].reference(vol, kw) for name in channels]).astype(np.float32)
