"""The deformable convolution against a brute-force per-pixel reference."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featherface_deploy.models.deform_conv import (
    LOWERINGS,
    ModulatedDeformConv2d,
    modulated_deform_conv3x3_bags,
    sampling_row_chunks,
    set_dcn_lowering,
)

ALL_LOWERINGS = pytest.mark.parametrize("lowering", sorted(LOWERINGS))


def _bilinear_zero(image: np.ndarray, y: float, x: float) -> np.ndarray:
    """torchvision's sampling: each of the four corners reads zero outside the image."""
    channels, height, width = image.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    value = np.zeros(channels)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                value += wy * wx * image[:, yy, xx]
    return value


def _reference(x, offset, mask, weight):
    x, offset, mask, weight = (t.double().numpy() for t in (x, offset, mask, weight))
    batch, _, height, width = x.shape
    out = np.zeros((batch, weight.shape[0], height, width))
    for b in range(batch):
        for h in range(height):
            for w in range(width):
                for k in range(9):
                    i, j = divmod(k, 3)
                    y = h - 1 + i + offset[b, 2 * k, h, w]
                    xx = w - 1 + j + offset[b, 2 * k + 1, h, w]
                    sample = _bilinear_zero(x[b], y, xx) * mask[b, k, h, w]
                    out[b, :, h, w] += weight[:, :, i, j] @ sample
    return out


@ALL_LOWERINGS
@pytest.mark.parametrize("height,width", [(5, 7), (6, 4), (1, 3)])
def test_matches_brute_force_on_random_fractional_offsets(lowering, height, width):
    generator = torch.Generator().manual_seed(height * width)
    x = torch.randn(2, 3, height, width, generator=generator)
    # Offsets up to ±3 px send many taps outside the image, exercising the zero border.
    offset = (torch.rand(2, 18, height, width, generator=generator) - 0.5) * 6
    mask = torch.rand(2, 9, height, width, generator=generator) * 2
    weight = torch.randn(4, 3, 3, 3, generator=generator)
    out = LOWERINGS[lowering](x, offset, mask, weight)
    np.testing.assert_allclose(out.double().numpy(), _reference(x, offset, mask, weight), atol=1e-4, rtol=1e-4)


@ALL_LOWERINGS
def test_integer_offsets_hit_exact_pixels(lowering):
    x = torch.randn(1, 2, 6, 6)
    offset = torch.zeros(1, 18, 6, 6)
    offset[:, 0::2] = 1.0  # every tap one row down
    weight = torch.randn(3, 2, 3, 3)
    out = LOWERINGS[lowering](x, offset, torch.ones(1, 9, 6, 6), weight)
    # Tap (i, j) at output row h reads input row h + i: a convolution padded 0 above, 2 below.
    expected = F.conv2d(F.pad(x, (1, 1, 0, 2)), weight)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)


@ALL_LOWERINGS
def test_zero_offsets_and_unit_mask_equal_plain_convolution(lowering):
    x = torch.randn(2, 8, 9, 11)
    weight = torch.randn(5, 8, 3, 3)
    out = LOWERINGS[lowering](x, torch.zeros(2, 18, 9, 11), torch.ones(2, 9, 9, 11), weight)
    np.testing.assert_allclose(out.numpy(), F.conv2d(x, weight, padding=1).numpy(), atol=1e-4, rtol=1e-5)


@ALL_LOWERINGS
def test_far_and_huge_offsets_read_zero(lowering):
    x = torch.randn(1, 3, 5, 6)
    offset = torch.full((1, 18, 5, 6), 40.0)
    offset[:, :, :2] = -1e6  # the first rows sample far above the image, the rest far below-right
    out = LOWERINGS[lowering](x, offset, torch.ones(1, 9, 5, 6), torch.randn(2, 3, 3, 3))
    assert torch.count_nonzero(out) == 0


def test_row_chunks_cover_every_row_once_within_the_pixel_budget():
    for batch, height, width, budget in [(1, 80, 80, 1 << 16), (2, 1250, 1250, 1 << 16), (3, 7, 5, 1), (1, 9, 4, 12)]:
        chunks = sampling_row_chunks(batch, height, width, budget)
        assert [row for chunk in chunks for row in chunk] == list(range(height))
        assert all(len(chunk) >= 1 for chunk in chunks)
        assert all(batch * width * len(chunk) <= max(budget, batch * width) for chunk in chunks)
    assert len(sampling_row_chunks(1, 1250, 1250)) == 25  # a 10,000-px image at stride 8: 52 rows a chunk


def test_chunked_sampling_is_bitwise_equal_and_bounds_the_bags(monkeypatch):
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(2, 5, 23, 17, generator=generator)
    offset = (torch.rand(2, 18, 23, 17, generator=generator) - 0.5) * 30  # reaches rows of other chunks
    mask = torch.rand(2, 9, 23, 17, generator=generator) * 2
    weight = torch.randn(6, 5, 3, 3, generator=generator)
    whole = modulated_deform_conv3x3_bags(x, offset, mask, weight)

    bag_shapes = []
    embedding_bag = torch.nn.functional.embedding_bag

    def recording_embedding_bag(index, *args, **kwargs):
        bag_shapes.append(tuple(index.shape))
        return embedding_bag(index, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "embedding_bag", recording_embedding_bag)
    chunked = modulated_deform_conv3x3_bags(x, offset, mask, weight, chunk_pixels=2 * 17 * 3)
    assert torch.equal(chunked, whole)
    # 3 rows × 2 images × 17 columns per call: 8 calls, none holding more than 102 bags of 36 corners.
    assert bag_shapes == [(102, 36)] * 7 + [(68, 36)]


def test_module_uses_twice_sigmoid_mask():
    layer = ModulatedDeformConv2d(4, 6).eval()
    torch.nn.init.zeros_(layer.offset_conv.weight)
    torch.nn.init.zeros_(layer.offset_conv.bias)
    torch.nn.init.zeros_(layer.modulator_conv.weight)
    torch.nn.init.zeros_(layer.modulator_conv.bias)  # 2·sigmoid(0) = 1
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(layer(x).numpy(), layer.regular_conv(x).numpy(), atol=1e-5)


def test_lowerings_agree_on_a_trained_model(v1_weights):
    from featherface_deploy.models import load_model

    model = load_model(v1_weights).model
    x = torch.randn(1, 3, 96, 128) * 50
    outputs = {}
    for lowering in LOWERINGS:
        set_dcn_lowering(model, lowering)
        with torch.no_grad():
            outputs[lowering] = model(x)
    for lowering, output in outputs.items():
        for a, b in zip(output, outputs["gather"]):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, err_msg=lowering)


def test_unknown_lowering_is_refused():
    with pytest.raises(ValueError, match="unknown DCN lowering"):
        set_dcn_lowering(ModulatedDeformConv2d(2, 2), "cuda-magic")
