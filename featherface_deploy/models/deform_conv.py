"""Modulated deformable convolution (DCNv2) in plain, exportable torch ops.

The model's SSH modules use 15 DCNv2 layers. torchvision's ``deform_conv2d``
is not used (torchvision is not a dependency), and the computation here is
written so that every converter knows its ops: a 1×1 convolution, integer index
arithmetic, one ``Gather`` and a multiply-add.

Instead of sampling the *input* (C_in channels) at the 9 deformed taps and then
convolving (im2col), the input is first projected with a 1×1 convolution per
tap into ``9 · C_out`` channels and the projection is sampled. Bilinear sampling
and the convolution are both linear, so the result is identical, while the
gathered tensor has C_out instead of C_in channels (2–4× less memory traffic in
this model, where C_out ≤ C_in).

Four lowerings compute the same function (tests hold them to each other and
to a brute-force reference):

- ``bags`` (eager default): one ``embedding_bag`` per output pixel over a
  channels-last projection table, in bounded row chunks — the fastest in
  PyTorch here, and its peak memory stays flat at large inputs.
- ``grid_sample``: samples the projection with torch's fused bilinear
  ``grid_sample`` kernel; ``GridSample`` is slow in ONNX Runtime and absent
  from TFLite.
- ``gather`` (portable, for export): integer index arithmetic, one ``Gather``
  and two MatMuls — ops that ONNX, TFLite and Core ML all know.
- ``gather_float`` (for LiteRT's XNNPACK): the same graph with the index
  arithmetic in float32 (constant base grid, validity from clamp/abs/relu, one
  cast to int32, an embedding-style row lookup), so every op but the cast and
  the lookup is one XNNPACK takes.

By default (``"auto"``) eager execution uses ``bags`` and any tracing or
export (``torch.export``, the dynamo ONNX exporter, ``torch.jit.trace``) uses
``gather``; :func:`set_dcn_lowering` forces one (the exporters set the one
measured fastest for their backend: ``exporters/dcn_choice.py``).

Conventions (torchvision's ``deform_conv2d``): for tap k = i·3 + j, offset
channel 2k is the row (y) offset and 2k+1 the column (x) offset; mask channel k
scales tap k; samples that fall outside the image read zero, corner by corner.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

KERNEL_TAPS = 9


def _tap_grid(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns the undeformed sample rows and columns, shaped (1, 9, H, 1) and (1, 9, 1, W)."""
    rows = torch.arange(height, dtype=like.dtype, device=like.device)
    cols = torch.arange(width, dtype=like.dtype, device=like.device)
    taps = torch.arange(KERNEL_TAPS, device=like.device)
    tap_dy = (torch.div(taps, 3, rounding_mode="floor") - 1).to(like.dtype)
    tap_dx = (taps % 3 - 1).to(like.dtype)
    base_y = rows.view(1, 1, height, 1) + tap_dy.view(1, KERNEL_TAPS, 1, 1)
    base_x = cols.view(1, 1, 1, width) + tap_dx.view(1, KERNEL_TAPS, 1, 1)
    return base_y, base_x


def modulated_deform_conv3x3(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """3×3 modulated deformable convolution, stride 1, padding 1, one offset group (``gather`` lowering).

    Everything is laid out channels-last, (B, H, W, tap), so the graph needs no
    large transpose: the projection is a MatMul whose rows (b, y, x, tap) form
    the gather table, one Gather fetches the 4 corners × 9 taps of every pixel,
    and a batched MatMul applies the bilinear × mask weights.

    Args:
        x: Input, (B, C_in, H, W).
        offset: Sampling offsets, (B, 18, H, W), (y, x) pairs per tap.
        mask: Modulation scalars, (B, 9, H, W).
        weight: Convolution weight, (C_out, C_in, 3, 3). No bias.

    Returns:
        The output, (B, C_out, H, W).
    """
    batch, in_channels, height, width = x.shape
    out_channels = weight.shape[0]
    pixels = height * width

    pixels_last = x.permute(0, 2, 3, 1).reshape(batch, pixels, in_channels)
    tap_weight = weight.permute(1, 2, 3, 0).reshape(in_channels, KERNEL_TAPS * out_channels)
    table = torch.matmul(pixels_last, tap_weight).reshape(batch * pixels * KERNEL_TAPS, out_channels)

    base_y, base_x = _tap_grid(height, width, x)
    offset = offset.reshape(batch, KERNEL_TAPS, 2, height, width).permute(0, 3, 4, 1, 2)
    sample_y = base_y.permute(0, 2, 3, 1) + offset[..., 0]  # (B, H, W, 9)
    sample_x = base_x.permute(0, 2, 3, 1) + offset[..., 1]
    mask = mask.permute(0, 2, 3, 1)
    y0 = torch.floor(sample_y)
    x0 = torch.floor(sample_x)
    frac_y = sample_y - y0
    frac_x = sample_x - x0

    tap = torch.arange(KERNEL_TAPS, device=x.device)
    image_start = (torch.arange(batch, device=x.device) * pixels).view(batch, 1, 1, 1)
    indices = []
    weights = []
    for dy, wy in ((0, 1 - frac_y), (1, frac_y)):
        row = y0 + dy
        row_ok = (row >= 0) & (row <= height - 1)
        row_start = image_start + row.clamp(0, height - 1).to(torch.int64) * width
        for dx, wx in ((0, 1 - frac_x), (1, frac_x)):
            col = x0 + dx
            valid = row_ok & (col >= 0) & (col <= width - 1)
            indices.append((row_start + col.clamp(0, width - 1).to(torch.int64)) * KERNEL_TAPS + tap)
            weights.append(wy * wx * mask * valid.to(x.dtype))

    # (B, H, W, 9, 4): per pixel, 36 table rows and their weights.
    index = torch.stack(indices, dim=-1).reshape(-1)
    corner_weight = torch.stack(weights, dim=-1).reshape(batch, pixels, 1, 4 * KERNEL_TAPS)
    sampled = torch.index_select(table, 0, index).reshape(batch, pixels, 4 * KERNEL_TAPS, out_channels)
    out = torch.matmul(corner_weight, sampled)
    return out.reshape(batch, height, width, out_channels).permute(0, 3, 1, 2)


# Float32 holds every integer below 2**24 exactly, so flat indices computed in float are exact below it.
FLOAT_EXACT_INDEX_LIMIT = 2 ** 24
_TAP_DY = (-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0)
_TAP_DX = (-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0)


def _inside(coordinate: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(coordinate clamped into [0, size − 1], 1.0 where it was inside else 0.0), for integer-valued floats.

    The validity comes from arithmetic, not comparisons: a coordinate that lies
    outside moves by at least one when clamped, so ``relu(1 − |c − clamp(c)|)``
    is exactly 1 inside and 0 outside.
    """
    clamped = coordinate.clamp(0, size - 1)
    return clamped, torch.relu(1 - (coordinate - clamped).abs())


def modulated_deform_conv3x3_float_index(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Same as :func:`modulated_deform_conv3x3` with the index arithmetic in float32 (``gather_float`` lowering).

    Written for delegates that take only float arithmetic (LiteRT's XNNPACK):
    the base grid is a constant for a fixed size (no integer ``arange``
    arithmetic), the validity of each corner comes from clamp/abs/relu
    (:func:`_inside`) instead of comparisons and logical ops, the flat table
    indices are computed in float (exact: every index stays below 2**24) and
    cast to int32 once, before the one Gather. Sizes whose table would reach
    2**24 rows fall back to the integer :func:`modulated_deform_conv3x3`.
    """
    batch, in_channels, height, width = x.shape
    out_channels = weight.shape[0]
    pixels = height * width
    if batch * pixels * KERNEL_TAPS >= FLOAT_EXACT_INDEX_LIMIT:
        return modulated_deform_conv3x3(x, offset, mask, weight)

    pixels_last = x.permute(0, 2, 3, 1).reshape(batch, pixels, in_channels)
    tap_weight = weight.permute(1, 2, 3, 0).reshape(in_channels, KERNEL_TAPS * out_channels)
    table = torch.matmul(pixels_last, tap_weight).reshape(batch * pixels * KERNEL_TAPS, out_channels)

    tap_dy = torch.tensor(_TAP_DY, dtype=x.dtype, device=x.device)
    tap_dx = torch.tensor(_TAP_DX, dtype=x.dtype, device=x.device)
    rows = torch.arange(height, dtype=x.dtype, device=x.device).view(1, height, 1, 1)
    cols = torch.arange(width, dtype=x.dtype, device=x.device).view(1, 1, width, 1)
    offset = offset.reshape(batch, KERNEL_TAPS, 2, height, width).permute(0, 3, 4, 1, 2)
    sample_y = offset[..., 0] + (rows + tap_dy)  # (B, H, W, 9)
    sample_x = offset[..., 1] + (cols + tap_dx)
    mask = mask.permute(0, 2, 3, 1)
    y0 = torch.floor(sample_y)
    x0 = torch.floor(sample_x)
    frac_y = sample_y - y0
    frac_x = sample_x - x0

    # Table row of (b, y, x, tap) = ((b·H + y)·W + x)·9 + tap.
    tap = torch.arange(KERNEL_TAPS, dtype=x.dtype, device=x.device)
    image_start = (torch.arange(batch, dtype=x.dtype, device=x.device) * (pixels * KERNEL_TAPS)).view(batch, 1, 1, 1)
    row_parts, col_parts = [], []
    for dy, wy in ((0, 1 - frac_y), (1, frac_y)):
        row, row_ok = _inside(y0 + dy, height)
        row_parts.append((row * (width * KERNEL_TAPS) + image_start, wy * row_ok * mask))
    for dx, wx in ((0, 1 - frac_x), (1, frac_x)):
        col, col_ok = _inside(x0 + dx, width)
        col_parts.append((col * KERNEL_TAPS + tap, wx * col_ok))
    indices = [row + col for row, _ in row_parts for col, _ in col_parts]
    weights = [wy * wx for _, wy in row_parts for _, wx in col_parts]

    index = torch.stack(indices, dim=-1).reshape(-1).to(torch.int32)
    corner_weight = torch.stack(weights, dim=-1).reshape(batch, pixels, 1, 4 * KERNEL_TAPS)
    # An embedding lookup is a bare row gather (TFLite EMBEDDING_LOOKUP, ONNX Gather); index_select adds
    # negative-index and bounds handling around TFLite's GATHER_ND that no delegate takes.
    sampled = F.embedding(index, table).reshape(batch, pixels, 4 * KERNEL_TAPS, out_channels)
    out = torch.matmul(corner_weight, sampled)
    return out.reshape(batch, height, width, out_channels).permute(0, 3, 1, 2)


def _normalised_tap_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Undeformed sample points in ``grid_sample`` coordinates, (9, H, W, [x, y]); cached per size in eager mode."""
    key = (height, width, like.dtype, like.device)
    grid = _GRID_CACHE.get(key)
    if grid is None:
        base_y, base_x = _tap_grid(height, width, like)
        base_x = (base_x * 2 + 1) / width - 1
        base_y = (base_y * 2 + 1) / height - 1
        grid = torch.stack([base_x.expand(1, KERNEL_TAPS, height, width),
                            base_y.expand(1, KERNEL_TAPS, height, width)], dim=-1)[0]
        if len(_GRID_CACHE) >= _GRID_CACHE_SIZE:
            _GRID_CACHE.pop(next(iter(_GRID_CACHE)))
        _GRID_CACHE[key] = grid
    return grid


_GRID_CACHE: dict[tuple, torch.Tensor] = {}
_GRID_CACHE_SIZE = 64


def modulated_deform_conv3x3_grid_sample(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Same as :func:`modulated_deform_conv3x3`, sampling with ``F.grid_sample``.

    ``align_corners=False`` with pixel p mapped to (2p + 1) / size − 1 is exact
    for any size (including 1), and ``padding_mode="zeros"`` zeroes each corner
    outside the image, as torchvision does.
    """
    batch, _, height, width = x.shape
    out_channels = weight.shape[0]
    tap_weight = weight.permute(2, 3, 0, 1).reshape(KERNEL_TAPS * out_channels, -1, 1, 1)
    projected = F.conv2d(x, tap_weight).reshape(batch * KERNEL_TAPS, out_channels, height, width)
    # (B, 9, 2, H, W) (y, x) offsets → (B, 9, H, W, 2) (x, y) grid units, added to the cached base grid.
    offset_xy = offset.reshape(batch, KERNEL_TAPS, 2, height, width).permute(0, 1, 3, 4, 2).flip(-1)
    scale = offset.new_tensor([2.0 / width, 2.0 / height])
    grid = torch.addcmul(_normalised_tap_grid(height, width, x), offset_xy, scale)
    sampled = F.grid_sample(projected, grid.reshape(batch * KERNEL_TAPS, height, width, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(batch, KERNEL_TAPS, out_channels, height, width)
    return (sampled * mask.reshape(batch, KERNEL_TAPS, 1, height, width)).sum(dim=1)


SAMPLING_CHUNK_PIXELS = 1 << 16
"""Output pixels whose bilinear bags one ``embedding_bag`` call builds (bounds the index and weight temporaries)."""

# The table is the projection of the input zero-padded by 1 row/column before and 2 after: a sample clamped
# to [-1, size] then reads only table rows, and those outside the image are zero, as DCNv2's border is.
_PAD_BEFORE, _PAD_AFTER = 1, 2


def sampling_row_chunks(batch: int, height: int, width: int, chunk_pixels: int = SAMPLING_CHUNK_PIXELS) -> list[range]:
    """Splits the output rows into ranges of at most ``chunk_pixels`` pixels over the batch (at least one row each)."""
    rows = max(1, chunk_pixels // max(1, batch * width))
    return [range(start, min(start + rows, height)) for start in range(0, height, rows)]


def _padded_tap_grid(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Undeformed taps in padded-table coordinates, (H, 1, 9) rows and (W, 9) columns, and the tap numbers (9,)."""
    key = ("padded", height, width, like.dtype, like.device)
    grid = _GRID_CACHE.get(key)
    if grid is None:
        base_y, base_x = _tap_grid(height, width, like)
        grid = (base_y[0].permute(1, 2, 0) + _PAD_BEFORE, base_x[0].permute(2, 1, 0)[:, 0] + _PAD_BEFORE,
                torch.arange(KERNEL_TAPS, device=like.device, dtype=torch.int32))
        if len(_GRID_CACHE) >= _GRID_CACHE_SIZE:
            _GRID_CACHE.pop(next(iter(_GRID_CACHE)))
        _GRID_CACHE[key] = grid
    return grid


def _bilinear_bags(offset: torch.Tensor, mask: torch.Tensor, rows: range, height: int, width: int,
                   index_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded-table rows and weights of the 4 corners × 9 taps of every output pixel in ``rows``.

    Returns:
        ``index`` and ``weight``, both (B · len(rows) · W, 36): a bag per pixel, in (corner, tap) order.
    """
    batch = offset.shape[0]
    base_y, base_x, tap = _padded_tap_grid(height, width, offset)
    # (B, 9, 2, rows, W) (y, x) offsets → (B, rows, W, 9), so that each pixel's bag is contiguous.
    offset = offset[:, :, rows.start:rows.stop].unflatten(1, (KERNEL_TAPS, 2)).permute(0, 3, 4, 1, 2)
    mask = mask[:, :, rows.start:rows.stop].permute(0, 2, 3, 1)
    # Beyond [-1, size] both corners read zero; clamping there keeps the result and every index in the table.
    sample_y = torch.add(offset[..., 0], base_y[rows.start:rows.stop]).clamp_(0, height + 1)
    sample_x = torch.add(offset[..., 1], base_x).clamp_(0, width + 1)
    y0 = sample_y.floor()
    x0 = sample_x.floor()
    frac_y = sample_y.sub_(y0)
    frac_x = sample_x.sub_(x0)
    row_weight = (torch.mul(mask, 1 - frac_y), frac_y.mul_(mask))
    col_weight = (1 - frac_x, frac_x)
    padded_width = width + _PAD_BEFORE + _PAD_AFTER
    image_rows = (torch.arange(batch, device=offset.device, dtype=index_dtype) * (height + _PAD_BEFORE + _PAD_AFTER))
    first = (y0.to(index_dtype).add_(image_rows.view(batch, 1, 1, 1)).mul_(padded_width)
             .add_(x0.to(index_dtype)).mul_(KERNEL_TAPS).add_(tap))
    shape = (*first.shape[:3], 4, KERNEL_TAPS)
    index = torch.empty(shape, dtype=index_dtype, device=offset.device)
    weight = torch.empty(shape, dtype=offset.dtype, device=offset.device)
    for corner in range(4):
        dy, dx = divmod(corner, 2)
        torch.add(first, (dy * padded_width + dx) * KERNEL_TAPS, out=index[..., corner, :])
        torch.mul(row_weight[dy], col_weight[dx], out=weight[..., corner, :])
    return index.view(-1, 4 * KERNEL_TAPS), weight.view(-1, 4 * KERNEL_TAPS)


def modulated_deform_conv3x3_bags(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
    chunk_pixels: int = SAMPLING_CHUNK_PIXELS,
) -> torch.Tensor:
    """Same as :func:`modulated_deform_conv3x3`, sampling with ``F.embedding_bag`` (eager default).

    The per-tap projection is a channels-last table, one row of C_out floats per
    (padded pixel, tap); each output pixel is one bag of 36 rows (4 corners ×
    9 taps) whose per-sample weights are the bilinear weights × mask, so one
    fused kernel gathers contiguous rows and sums them (``grid_sample`` gathers
    one float per channel and leaves the mask product and the tap sum to two
    more passes over a 9·C_out-channel tensor). The bags are built for
    ``chunk_pixels`` output pixels at a time, so the index and weight
    temporaries stay bounded at any input size; each bag is summed by the same
    kernel whatever the chunking, so the result is bitwise the same.
    """
    batch, in_channels, height, width = x.shape
    out_channels = weight.shape[0]
    tap_weight = weight.permute(1, 2, 3, 0).reshape(in_channels, KERNEL_TAPS * out_channels)
    padded = F.pad(x, (_PAD_BEFORE, _PAD_AFTER, _PAD_BEFORE, _PAD_AFTER))
    # Row ((b·H' + y')·W' + x')·9 + tap holds the projection of tap `tap` at padded pixel (y', x').
    table = torch.matmul(padded.permute(0, 2, 3, 1), tap_weight).view(-1, out_channels)
    index_dtype = torch.int32 if table.shape[0] < 2 ** 31 else torch.int64
    chunks = sampling_row_chunks(batch, height, width, chunk_pixels)
    out = x.new_empty(batch, height, width, out_channels) if len(chunks) > 1 else None
    for rows in chunks:
        index, bag_weight = _bilinear_bags(offset, mask, rows, height, width, index_dtype)
        sampled = F.embedding_bag(index, table, per_sample_weights=bag_weight, mode="sum")
        if out is None:
            out = sampled.view(batch, height, width, out_channels)
        else:
            out[:, rows.start:rows.stop] = sampled.view(batch, len(rows), width, out_channels)
    return out.permute(0, 3, 1, 2)


LOWERINGS: dict[str, Callable[..., torch.Tensor]] = {
    "bags": modulated_deform_conv3x3_bags,
    "grid_sample": modulated_deform_conv3x3_grid_sample,
    "gather": modulated_deform_conv3x3,
    "gather_float": modulated_deform_conv3x3_float_index,
}


def set_dcn_lowering(model: nn.Module, lowering: str) -> None:
    """Chooses how every DCNv2 block of ``model`` computes: ``auto`` or a key of :data:`LOWERINGS`.

    Raises:
        ValueError: Unknown lowering name.
    """
    if lowering != "auto" and lowering not in LOWERINGS:
        raise ValueError(f"unknown DCN lowering '{lowering}'; choose one of {sorted(LOWERINGS)}")
    for module in model.modules():
        if isinstance(module, ModulatedDeformConv2d):
            module.lowering = lowering


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 block as the FeatherFace checkpoints store it.

    ``offset_conv`` (3×3, bias) predicts 18 offsets, ``modulator_conv`` (3×3,
    bias) predicts 9 masks as ``2·sigmoid`` (range 0–2), and ``regular_conv``
    holds the deformable kernel (3×3, no bias).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.offset_conv = nn.Conv2d(in_channels, 2 * KERNEL_TAPS, 3, padding=1, bias=True)
        self.modulator_conv = nn.Conv2d(in_channels, KERNEL_TAPS, 3, padding=1, bias=True)
        self.regular_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.lowering = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One convolution predicts offsets and masks together (same input, same kernel size).
        weight = torch.cat([self.offset_conv.weight, self.modulator_conv.weight])
        bias = torch.cat([self.offset_conv.bias, self.modulator_conv.bias])
        offset_and_mask = F.conv2d(x, weight, bias, padding=1)
        offset = offset_and_mask[:, : 2 * KERNEL_TAPS]
        mask = 2.0 * torch.sigmoid(offset_and_mask[:, 2 * KERNEL_TAPS:])
        lowering = self.lowering
        if lowering == "auto":
            tracing = torch.compiler.is_compiling() or torch.jit.is_tracing()
            lowering = "gather" if tracing else "bags"
        return LOWERINGS[lowering](x, offset, mask, self.regular_conv.weight)
