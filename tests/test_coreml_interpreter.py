"""The numpy reference interpreter of Core ML ML Programs, op by op, against independent references.

Each test writes a small ML Program with coremltools' MIL builder (no graph
passes, so the file holds exactly the ops written), saves it as an
``.mlpackage``, reads it back with :class:`MilInterpreter` and compares with
PyTorch or numpy computing the op's definition.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_backend  # noqa: E402

requires_backend("coreml", "export")  # the tests convert their programs with coremltools
import coremltools as ct  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from coremltools.converters.mil import Builder as mb  # noqa: E402

from featherface_deploy.errors import InterpreterError  # noqa: E402
from featherface_deploy.runtimes.mil import MilInterpreter  # noqa: E402

RNG = np.random.default_rng(0)


def _run(tmp_path, program, *inputs, target=ct.target.iOS16):
    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=target,
                       compute_precision=ct.precision.FLOAT32, pass_pipeline=ct.PassPipeline.EMPTY)
    path = tmp_path / "op.mlpackage"
    model.save(str(path))
    interpreter = MilInterpreter(path)
    feeds = {spec.name: value for spec, value in zip(interpreter.inputs, inputs)}
    return interpreter, list(interpreter.run(feeds).values())


def test_grouped_strided_dilated_conv_with_asymmetric_padding(tmp_path):
    x = RNG.standard_normal((2, 4, 11, 10)).astype(np.float32)
    weight = RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)
    bias = RNG.standard_normal(6).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        return mb.conv(x=x, weight=weight, bias=bias, strides=[2, 1], pad_type="custom", pad=[1, 0, 2, 1],
                       dilations=[1, 2], groups=2)

    _, (got,) = _run(tmp_path, program, x)
    want = F.conv2d(F.pad(torch.from_numpy(x), (2, 1, 1, 0)), torch.from_numpy(weight), torch.from_numpy(bias),
                    stride=(2, 1), dilation=(1, 2), groups=2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_depthwise_conv_and_same_padding_with_stride(tmp_path):
    x = RNG.standard_normal((1, 5, 9, 8)).astype(np.float32)
    weight = RNG.standard_normal((5, 1, 3, 3)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        return mb.conv(x=x, weight=weight, strides=[2, 2], pad_type="same", groups=5)

    _, (got,) = _run(tmp_path, program, x)
    # TF "same": output ceil(size / 2); odd total padding puts the extra row/column after.
    want = F.conv2d(F.pad(torch.from_numpy(x), (0, 1, 1, 1)), torch.from_numpy(weight), stride=2, groups=5).numpy()
    assert got.shape == (1, 5, 5, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_max_pool_pads_with_minus_infinity_and_ceil_mode(tmp_path):
    x = -1.0 - RNG.random((1, 3, 7, 8)).astype(np.float32)  # all negative: a zero pad would win

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        return mb.max_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1],
                           ceil_mode=True)

    _, (got,) = _run(tmp_path, program, x)
    want = F.max_pool2d(torch.from_numpy(x), 3, 2, padding=1, ceil_mode=True).numpy()
    np.testing.assert_array_equal(got, want)


def test_pad_then_max_pool_keeps_the_zero_padding(tmp_path):
    """The BiFPN's stride2 pool: a constant zero pad must not merge into max_pool's −inf padding."""
    x = -1.0 - RNG.random((1, 2, 6, 8)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        padded = mb.pad(x=x, pad=[0, 1, 0, 1], mode="constant", constant_val=0.0)
        return mb.max_pool(x=padded, kernel_sizes=[3, 3], strides=[2, 2], pad_type="valid")

    _, (got,) = _run(tmp_path, program, x)
    assert (got[..., -1, :] == 0).all()
    np.testing.assert_array_equal(got, F.max_pool2d(F.pad(torch.from_numpy(x), (0, 1, 0, 1)), 3, 2).numpy())


@pytest.mark.parametrize("scale", [2.0, 1.5])
def test_upsample_nearest_neighbor_integer_and_fractional(tmp_path, scale):
    x = RNG.standard_normal((1, 2, 4, 6)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        return mb.upsample_nearest_neighbor(x=x, scale_factor_height=scale, scale_factor_width=scale)

    _, (got,) = _run(tmp_path, program, x)
    want = F.interpolate(torch.from_numpy(x), scale_factor=scale, mode="nearest").numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("scale_h, scale_w", [(1.7, 2.0), (0.6, 0.75)])
def test_upsample_bilinear_matches_torch_at_the_output_size(tmp_path, align_corners, scale_h, scale_w):
    """MIL recomputes the spacing from the sizes: torch's ``interpolate(size=...)`` is the same map."""
    x = RNG.standard_normal((1, 3, 5, 8)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        return mb.upsample_bilinear(x=x, scale_factor_height=scale_h, scale_factor_width=scale_w,
                                    align_corners=align_corners)

    _, (got,) = _run(tmp_path, program, x)
    size = (int(5 * scale_h), int(8 * scale_w))
    want = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear", align_corners=align_corners).numpy()
    assert got.shape == want.shape == (1, 3, *size)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("align_corners, half_pixel_centers, grid", [
    (True, None, [0.0, 0.25, 0.5, 0.75, 1.0]),
    (False, None, [0.0, 0.1, 0.5, 0.9, 1.0]),
    (False, False, [0.0, 0.4, 0.8, 1.0, 1.0]),  # i · in/out, clamped
])
def test_upsample_bilinear_samples_the_documented_grid(tmp_path, align_corners, half_pixel_centers, grid):
    """An input row [0, 1] reads back its sample coordinates: the op definition's 2 → 5 examples."""
    x = np.array([[[0.0, 1.0]]], np.float32)
    extra = {} if half_pixel_centers is None else {"half_pixel_centers": half_pixel_centers}

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        return mb.upsample_bilinear(x=x, scale_factor_height=1.0, scale_factor_width=2.5,
                                    align_corners=align_corners, **extra)

    _, (got,) = _run(tmp_path, program, x)
    np.testing.assert_allclose(got.reshape(-1), grid, atol=1e-6)


def test_slice_by_index_masks_gather_negative_indices_and_reshape_zero(tmp_path):
    x = RNG.standard_normal((3, 5, 4)).astype(np.float32)
    indices = np.array([[0, -1], [2, 1]], np.int32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS17)
    def program(x):
        sliced = mb.slice_by_index(x=x, begin=[1, 4, 0], end=[3, 0, 2], stride=[1, -2, 1],
                                   begin_mask=[False, False, True], end_mask=[False, True, False],
                                   squeeze_mask=[False, False, False])
        gathered = mb.gather(x=x, indices=indices, axis=1)
        reshaped = mb.reshape(x=x, shape=[0, -1])
        return sliced, gathered, reshaped

    _, (sliced, gathered, reshaped) = _run(tmp_path, program, x, target=ct.target.iOS17)
    np.testing.assert_array_equal(sliced, x[1:3, 4::-2, :2])
    np.testing.assert_array_equal(gathered, np.take(x, np.where(indices < 0, indices + 5, indices), axis=1))
    # iOS17 reshape: a 0 copies the input dimension it lines up with from the right (here x.shape[1]).
    np.testing.assert_array_equal(reshaped, x.reshape(5, 12))


def test_batch_norm_softmax_linear_matmul(tmp_path):
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    mean, var, gamma, beta = (RNG.random(3).astype(np.float32) + 0.5 for _ in range(4))
    weight, bias = RNG.standard_normal((7, 5)).astype(np.float32), RNG.standard_normal(7).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        normed = mb.batch_norm(x=x, mean=mean, variance=var, gamma=gamma, beta=beta, epsilon=1e-3)
        return (mb.softmax(x=normed, axis=1), mb.linear(x=x, weight=weight, bias=bias),
                mb.matmul(x=x, y=x, transpose_x=False, transpose_y=True))

    _, (soft, linear, product) = _run(tmp_path, program, x)
    t = torch.from_numpy(x)
    normed = F.batch_norm(t, *(torch.from_numpy(v) for v in (mean, var, gamma, beta)), eps=1e-3)
    np.testing.assert_allclose(soft, torch.softmax(normed, 1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(linear, F.linear(t, torch.from_numpy(weight), torch.from_numpy(bias)).numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(product, (t @ t.transpose(-1, -2)).numpy(), rtol=1e-5, atol=1e-4)


def test_fp16_casts_round_every_intermediate(tmp_path):
    x = np.array([[1.0, 2049.0, 0.1, 65504.0]], np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        half = mb.cast(x=x, dtype="fp16")
        total = mb.add(x=half, y=np.float16(1.0))
        return mb.cast(x=total, dtype="fp32")

    interpreter, (got,) = _run(tmp_path, program, x)
    assert got.dtype == np.float32
    # 2049 is not a float16; 65504 + 1 rounds back to the largest float16.
    np.testing.assert_array_equal(got, (x.astype(np.float16) + np.float16(1.0)).astype(np.float32))
    assert interpreter.op_counts["cast"] == 2


def test_constexpr_affine_dequantize_expands_int8_weights(tmp_path):
    quantized = RNG.integers(-127, 128, (4, 3)).astype(np.int8)
    scale = RNG.random(4).astype(np.float32)
    zero_point = np.array([0, 1, -2, 3], np.int8)
    x = RNG.standard_normal((2, 3)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):
        weight = mb.constexpr_affine_dequantize(quantized_data=quantized, zero_point=zero_point, scale=scale, axis=0)
        return mb.linear(x=x, weight=weight)

    _, (got,) = _run(tmp_path, program, x)
    dequantized = scale[:, None] * (quantized.astype(np.float32) - zero_point[:, None])
    np.testing.assert_allclose(got, x @ dequantized.T, rtol=1e-5, atol=1e-5)


def test_constexpr_blockwise_shift_scale(tmp_path):
    data = RNG.integers(-127, 128, (4, 6)).astype(np.int8)
    scale = RNG.random((4, 2)).astype(np.float32)
    offset = RNG.integers(-3, 4, (4, 2)).astype(np.int8)
    x = RNG.standard_normal((1, 6)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS18)
    def program(x):
        weight = mb.constexpr_blockwise_shift_scale(data=data, scale=scale, offset=offset)
        return mb.linear(x=x, weight=weight)

    _, (got,) = _run(tmp_path, program, x, target=ct.target.iOS18)
    blocks = np.repeat(scale, 3, axis=1) * (data.astype(np.float32) - np.repeat(offset, 3, axis=1))
    np.testing.assert_allclose(got, x @ blocks.T, rtol=1e-5, atol=1e-5)


def test_unknown_op_is_an_error_naming_it(tmp_path):
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.iOS16)
    def program(x):
        return mb.erf(x=x)

    with pytest.raises(InterpreterError, match="does not implement the MIL op.*erf"):
        _run(tmp_path, program, np.zeros((1, 4), np.float32))


def test_wrong_input_shape_is_refused(tmp_path):
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.iOS16)
    def program(x):
        return mb.relu(x=x)

    interpreter, _ = _run(tmp_path, program, np.zeros((1, 4), np.float32))
    with pytest.raises(InterpreterError, match=r"must be shaped \(1, 4\)"):
        interpreter.run({interpreter.inputs[0].name: np.zeros((2, 4), np.float32)})
