"""Calibration sets: deterministic sampling, content-hashed cache, errors, ORT reader protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featherface_deploy.calibration import CalibrationConfig, build_calibration_set, default_cache_dir
from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import DatasetError
from featherface_deploy.postprocess import load_image, preprocess

CONTRACT = DecodeContract(model_name="featherface-tiny")
SMALL = CalibrationConfig(num_images=3, seed=0, input_size=(64, 96))


def _make_folder(root: Path, count: int = 5) -> Path:
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(123)
    for i in range(count):
        size = (40 + 7 * i, 50 + 3 * i, 3)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return _make_folder(tmp_path)


def test_same_inputs_as_runtime_preprocessing(folder: Path, tmp_path: Path) -> None:
    calib = build_calibration_set(folder, CONTRACT, SMALL, cache_dir=tmp_path / "cache")
    assert calib.inputs.shape == (3, 3, 64, 96) and calib.inputs.dtype == np.float32
    expected, _ = preprocess(load_image(folder / calib.files[0]), CONTRACT.replace(input_size=(64, 96)))
    np.testing.assert_array_equal(calib.inputs[0], expected)


def test_deterministic_sampling(folder: Path, tmp_path: Path) -> None:
    first = build_calibration_set(folder, CONTRACT, SMALL, use_cache=False)
    second = build_calibration_set(folder, CONTRACT, SMALL, use_cache=False)
    assert first.files == second.files and first.digest == second.digest
    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert list(first.files) == sorted(first.files)
    other_seed = build_calibration_set(folder, CONTRACT, CalibrationConfig(3, seed=7, input_size=(64, 96)),
                                       use_cache=False)
    assert other_seed.digest != first.digest


def test_cache_hit(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = build_calibration_set(folder, CONTRACT, SMALL, cache_dir=cache)
    assert first.cache_path is not None and first.cache_path.is_file()
    stamp = first.cache_path.stat().st_mtime_ns
    second = build_calibration_set(folder, CONTRACT, SMALL, cache_dir=cache)
    assert second.cache_path == first.cache_path and second.cache_path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert not list(cache.glob("*.tmp"))


def test_cache_invalidated_by_image_bytes(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = build_calibration_set(folder, CONTRACT, CalibrationConfig(10, input_size=(64, 96)), cache_dir=cache)
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(folder / "img0.png")
    second = build_calibration_set(folder, CONTRACT, CalibrationConfig(10, input_size=(64, 96)), cache_dir=cache)
    assert second.digest != first.digest
    assert not np.array_equal(first.inputs[0], second.inputs[0])
    assert len(list(cache.glob("*.npz"))) == 2


def test_cache_invalidated_by_preprocessing(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = build_calibration_set(folder, CONTRACT, SMALL, cache_dir=cache)
    other_mean = build_calibration_set(folder, CONTRACT.replace(mean_bgr=(0.0, 0.0, 0.0)), SMALL, cache_dir=cache)
    other_size = build_calibration_set(folder, CONTRACT, CalibrationConfig(3, 0, (32, 32)), cache_dir=cache)
    nhwc = build_calibration_set(folder, CONTRACT.replace(input_layout="NHWC"), SMALL, cache_dir=cache)
    assert len({base.digest, other_mean.digest, other_size.digest, nhwc.digest}) == 4
    assert not np.array_equal(other_mean.inputs, base.inputs)
    assert other_size.inputs.shape[2:] == (32, 32)
    np.testing.assert_array_equal(nhwc.inputs, base.inputs.transpose(0, 2, 3, 1))


def test_fixed_size_model_uses_its_own_size(folder: Path) -> None:
    calib = build_calibration_set(folder, CONTRACT.replace(input_size=(48, 48)), SMALL, use_cache=False)
    assert calib.inputs.shape[2:] == (48, 48)


def test_empty_folder_names_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="empty"):
        build_calibration_set(empty, CONTRACT, SMALL, use_cache=False)
    with pytest.raises(DatasetError, match="not found"):
        build_calibration_set(tmp_path / "missing", CONTRACT, SMALL, use_cache=False)


def test_no_readable_image(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="a.jpg"), pytest.raises(DatasetError, match="no readable image"):
        build_calibration_set(broken, CONTRACT, SMALL, use_cache=False)


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEATHERFACE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "calibration"
    monkeypatch.delenv("FEATHERFACE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "featherface_deploy" / "calibration"


def test_ort_reader_protocol(folder: Path) -> None:
    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader

    from featherface_deploy.calibration import OrtCalibrationReader

    calib = build_calibration_set(folder, CONTRACT, SMALL, use_cache=False)
    reader = OrtCalibrationReader(calib, input_name="input", batch_size=2)
    assert isinstance(reader, CalibrationDataReader) and len(reader) == 2
    feeds = list(iter(reader.get_next, None))
    assert [f["input"].shape[0] for f in feeds] == [2, 1] and set(feeds[0]) == {"input"}
    assert reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["input"], calib.inputs[:2])


def test_dataset_imports_no_backend() -> None:
    code = ("import sys, featherface_deploy.calibration as c; c.CalibrationConfig; "
            "bad = [m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
