"""Convolution, pooling, normalisation, matrix and resampling ops of the MIL opset, in numpy.

Only 2-D spatial ops are implemented (the converted detectors have no others);
a 1-D or 3-D one raises. Kernels follow the op definitions in
``coremltools.converters.mil.mil.ops.defs.iOS15`` (``conv``, ``max_pool``,
``avg_pool``, ``batch_norm``, ``linear``, ``matmul``, ``upsample_nearest_neighbor``,
``upsample_bilinear``; the iOS 16 version of the last adds ``half_pixel_centers``).
"""

from __future__ import annotations

import math

import numpy as np


def _pads(pad_type: str, pad, spatial: tuple[int, int], kernel: tuple[int, int], strides, dilations) -> list[int]:
    """[top, bottom, left, right] for a MIL ``pad_type``."""
    if pad_type == "valid":
        return [0, 0, 0, 0]
    if pad_type == "custom":
        return [int(v) for v in np.asarray(pad).reshape(-1)]
    if pad_type not in ("same", "same_lower"):
        raise ValueError(f"unknown pad_type '{pad_type}'")
    pads = []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        pads += [large, small] if pad_type == "same_lower" else [small, large]
    return pads


def _spatial_2d(x: np.ndarray, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: only 2-D spatial inputs (rank 4) are implemented, got rank {x.ndim}")


def _windows(x: np.ndarray, kernel, strides, dilations, out_hw) -> list[np.ndarray]:
    """The kernel taps of a padded (N, C, H, W) input: one (N, C, H_out, W_out) view per tap, row-major."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, strides, dilations, out_hw
    return [x[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]
            for i in range(kh) for j in range(kw)]


def _conv(x, weight, strides=None, pad_type="valid", pad=None, dilations=None, groups=1, bias=None):
    _spatial_2d(x, "conv")
    x, weight = x.astype(np.float32, copy=False), weight.astype(np.float32, copy=False)
    strides = (1, 1) if strides is None else tuple(int(s) for s in strides)
    dilations = (1, 1) if dilations is None else tuple(int(d) for d in dilations)
    groups = int(groups)
    out_channels, group_in, kh, kw = weight.shape
    top, bottom, left, right = _pads(pad_type, pad, x.shape[2:], (kh, kw), strides, dilations)
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    ho = (x.shape[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    wo = (x.shape[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    taps = _windows(x, (kh, kw), strides, dilations, (ho, wo))
    batch = x.shape[0]
    if group_in == 1 and groups == x.shape[1] == out_channels:  # depthwise: one multiply-add per tap
        taps_weight = weight.reshape(out_channels, kh * kw)
        out = np.zeros((batch, out_channels, ho, wo), np.float32)
        for k, tap in enumerate(taps):
            out += tap * taps_weight[:, k].reshape(1, -1, 1, 1)
    else:
        out_per_group = out_channels // groups
        outs = []
        for g in range(groups):
            channels = slice(g * group_in, (g + 1) * group_in)
            # (N, C_g, K, H_out·W_out) im2col, contracted with (C_out_g, C_g·K).
            columns = np.stack([tap[:, channels] for tap in taps], axis=2).reshape(batch, group_in * kh * kw, -1)
            kernel = weight[g * out_per_group:(g + 1) * out_per_group].reshape(out_per_group, -1)
            outs.append(np.matmul(kernel, columns).reshape(batch, out_per_group, ho, wo))
        out = outs[0] if groups == 1 else np.concatenate(outs, axis=1)
    if bias is not None:
        out += bias.astype(np.float32).reshape(1, -1, 1, 1)
    return out


def _pool_geometry(x, kernel_sizes, strides, pad_type, pad, ceil_mode):
    kernel = tuple(int(k) for k in kernel_sizes)
    strides = tuple(int(s) for s in strides)
    top, bottom, left, right = _pads(pad_type, pad, x.shape[2:], kernel, strides, (1, 1))
    out = []
    for size, k, s, before, after in zip(x.shape[2:], kernel, strides, (top, left), (bottom, right)):
        total = size + before + after
        dim = (total - k + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (dim - 1) * s >= size + before:  # the last window would start in the padding
            dim -= 1
        out.append(dim)
    # Extra trailing padding so that ceil-mode windows stay inside the array.
    extra = [max((o - 1) * s + k - (size + b + a), 0)
             for o, s, k, size, b, a in zip(out, strides, kernel, x.shape[2:], (top, left), (bottom, right))]
    return kernel, strides, (top, bottom + extra[0], left, right + extra[1]), tuple(out)


def _max_pool(x, kernel_sizes, strides, pad_type, pad=None, ceil_mode=False):
    _spatial_2d(x, "max_pool")
    kernel, strides, (top, bottom, left, right), out_hw = _pool_geometry(x, kernel_sizes, strides, pad_type,
                                                                          pad, ceil_mode)
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    return np.maximum.reduce(_windows(x, kernel, strides, (1, 1), out_hw))


def _avg_pool(x, kernel_sizes, strides, pad_type, pad=None, exclude_padding_from_average=False, ceil_mode=False):
    _spatial_2d(x, "avg_pool")
    kernel, strides, (top, bottom, left, right), out_hw = _pool_geometry(x, kernel_sizes, strides, pad_type,
                                                                          pad, ceil_mode)
    widths = ((0, 0), (0, 0), (top, bottom), (left, right))
    total = np.add.reduce(_windows(np.pad(x.astype(np.float32), widths), kernel, strides, (1, 1), out_hw))
    if exclude_padding_from_average:
        ones = np.pad(np.ones((1, 1, *x.shape[2:]), np.float32), widths)
        return total / np.add.reduce(_windows(ones, kernel, strides, (1, 1), out_hw))
    return total / (kernel[0] * kernel[1])


def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = 1.0 / np.sqrt(variance.astype(np.float32) + np.float32(epsilon))
    if gamma is not None:
        scale = scale * gamma
    out = (x - mean.reshape(shape)) * scale.reshape(shape)
    return out if beta is None else out + beta.reshape(shape)


def _linear(x, weight, bias=None):
    out = np.matmul(x.astype(np.float32), weight.astype(np.float32).T)
    return out if bias is None else out + bias


def _matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)
    if transpose_x:
        x = np.swapaxes(x, -1, -2)
    if transpose_y:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _nearest_indices(size: int, scale: float) -> np.ndarray:
    # Output index o reads input floor(o / scale): integer scales repeat, fractional ones floor.
    out = int(math.floor(size * scale))
    return np.minimum(np.floor(np.arange(out) / scale).astype(np.int64), size - 1)


def _upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    rows = _nearest_indices(x.shape[-2], float(scale_factor_height))
    cols = _nearest_indices(x.shape[-1], float(scale_factor_width))
    return x[..., rows, :][..., cols]


def _bilinear_taps(size: int, scale: float, align_corners: bool, half_pixel_centers: bool):
    """Low index, high index and high weight of each output sample along one axis.

    The output has floor(size · scale) samples and the spacing is recomputed from
    the sizes (the op's ``recompute_scale_factor`` semantics): with
    ``align_corners`` the grid is i · (size − 1) / (out − 1), otherwise
    i · size / out, shifted by half a pixel with ``half_pixel_centers``; then
    clamped to [0, size − 1].
    """
    out = int(math.floor(size * scale))
    if out < 1:
        raise ValueError(f"upsample_bilinear: scale {scale} leaves no output sample of an axis of {size}")
    steps = np.arange(out, dtype=np.float64)
    if align_corners:
        grid = steps * ((size - 1) / (out - 1) if out > 1 else 0.0)
    else:
        spacing = size / out
        grid = steps * spacing + (0.5 * spacing - 0.5 if half_pixel_centers else 0.0)
    grid = np.clip(grid, 0.0, size - 1)
    low = np.floor(grid).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    return low, high, (grid - low).astype(np.float32)


def _upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=True, half_pixel_centers=None):
    if x.ndim < 3:
        raise ValueError(f"upsample_bilinear: the input must have rank at least 3, got rank {x.ndim}")
    align_corners = bool(align_corners)
    half_pixel_centers = not align_corners if half_pixel_centers is None else bool(half_pixel_centers)
    if align_corners and half_pixel_centers:
        raise ValueError("upsample_bilinear: align_corners and half_pixel_centers cannot both be true")
    top, bottom, dy = _bilinear_taps(x.shape[-2], float(scale_factor_height), align_corners, half_pixel_centers)
    left, right, dx = _bilinear_taps(x.shape[-1], float(scale_factor_width), align_corners, half_pixel_centers)
    x = x.astype(np.float32, copy=False)
    rows = x[..., top, :] * (1 - dy)[:, None] + x[..., bottom, :] * dy[:, None]
    return rows[..., left] * (1 - dx) + rows[..., right] * dx


def nn_ops() -> dict:
    """Returns ``{op_type: kernel(**inputs)}`` for the neural-network ops."""
    return {
        "conv": _conv,
        "max_pool": _max_pool,
        "avg_pool": _avg_pool,
        "batch_norm": _batch_norm,
        "linear": _linear,
        "matmul": _matmul,
        "upsample_nearest_neighbor": _upsample_nearest_neighbor,
        "upsample_bilinear": _upsample_bilinear,
    }
