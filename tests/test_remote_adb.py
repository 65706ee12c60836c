"""``--remote adb``: the ``benchmark_model`` output parser on recorded real outputs (``tests/data/benchmark_model``,
sources in its README), the command lines, the push-once flow through a stand-in ``adb`` that replays a recorded
output, and the clear error of the real Debian ``adb`` when no device is attached. No Android device is used.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from featherface_deploy.errors import DeviceError
from featherface_deploy.remote.adb_device import AdbDevice, BenchmarkModelOptions, attached_devices, \
    benchmark_model_command
from featherface_deploy.remote.benchmark_model_output import clean_lines, delegation_notes, \
    parse_benchmark_model_output
from featherface_deploy.remote.runs import BenchmarkSettings

DATA = Path(__file__).parent / "data" / "benchmark_model"


def _recorded(name: str) -> str:
    return (DATA / name).read_text()


def test_old_memory_spelling_mi11_cpu():
    parsed = parse_benchmark_model_output(_recorded("yolov5s_fp32_cpu_mi11.txt"))
    assert (parsed.count, parsed.avg_us, parsed.std_us, parsed.min_us, parsed.max_us) == (50, 249684, 1442, 247067,
                                                                                          254474)
    assert (parsed.init_us, parsed.first_inference_us, parsed.warmup_avg_us, parsed.inference_avg_us) == \
        (16242, 360262, 304586, 249684)
    assert (parsed.memory_line, parsed.memory_init_mb, parsed.memory_overall_mb) == ("peak", 4.92969, 138.809)
    row = parsed.to_row()
    assert row["mean_ms"] == 249.684 and row["std_ms"] == 1.442 and row["peak_rss_mb"] == 138.809
    assert row["iterations"] == 50 and "p50_ms" not in row  # this release prints no median
    assert parsed.fallbacks == ()


def test_new_memory_spelling_scientific_notation_and_profiling_tables_riscv():
    parsed = parse_benchmark_model_output(_recorded("mobilenet_v1_qemuriscv64.txt"))
    # The timed runs' line, not the warm-up's (count=1) nor the profiler's "Timings (microseconds): count=1".
    assert (parsed.count, parsed.avg_us, parsed.std_us) == (50, 2.95034e06, 109798)
    assert parsed.warmup_avg_us == 3.51239e06 and parsed.init_us == 17187
    assert (parsed.memory_line, parsed.memory_init_mb, parsed.memory_overall_mb) == ("delta", 4.21094, 46.0859)


def test_xnnpack_delegate_is_recorded_raspberry_pi():
    parsed = parse_benchmark_model_output(_recorded("yolo_int8_xnnpack_rpi4.txt"))
    assert (parsed.count, parsed.avg_us, parsed.inference_avg_us) == (50, 55043.2, 55043.2)
    assert parsed.delegation == ("Created TensorFlow Lite XNNPACK delegate for CPU.",)
    assert parsed.fallbacks == ()


def test_full_gpu_delegation_is_not_a_fallback():
    parsed = parse_benchmark_model_output(_recorded("denoising_gpu_full_delegation.txt"))
    assert (parsed.count, parsed.avg_us, parsed.init_us) == (50, 119375, 870557)
    assert any("completely executed" in line for line in parsed.delegation)
    assert parsed.fallbacks == () and parsed.memory_line is None  # the recorded text stops before memory


def test_partial_nnapi_delegation_in_logcat_lines_is_a_fallback():
    text = _recorded("nnapi_partial_delegation_logcat.txt")
    parsed = parse_benchmark_model_output(text)
    assert (parsed.count, parsed.avg_us, parsed.std_us) == (75, 12167.6, 325)
    assert parsed.warmup_avg_us == 12581.9
    assert parsed.fallbacks == ("Explicitly applied NNAPI delegate, and the model graph will be partially executed "
                                "by the delegate w/ 44 delegate kernels.",)
    assert parsed.to_row()["fallbacks"] == list(parsed.fallbacks)


def test_nnapi_that_runs_nothing_is_a_fallback():
    delegation, fallbacks = delegation_notes(clean_lines(_recorded("nnapi_not_applied_logcat.txt")))
    assert fallbacks == ["Though NNAPI delegate is explicitly applied, the model graph will not be executed by the "
                         "delegate"]
    assert "Created TensorFlow Lite delegate for NNAPI." in delegation


def test_failed_delegate_is_an_error_quoting_the_tool():
    with pytest.raises(DeviceError, match="printed no timings.*ANEURALNETWORKS_BAD_DATA.*Failed to apply NNAPI"):
        parse_benchmark_model_output(_recorded("yolov5s_int8_nnapi_dsp_failed_mi11.txt"))


def test_benchmark_model_command_lines():
    plain = benchmark_model_command("/data/local/tmp/bm", "/data/local/tmp/m.tflite", 4, 5, 50,
                                    BenchmarkModelOptions("/data/local/tmp/bm"))
    assert plain == ["/data/local/tmp/bm", "--graph=/data/local/tmp/m.tflite", "--num_threads=4", "--warmup_runs=5",
                     "--num_runs=50"]
    accelerated = benchmark_model_command("bm", "m.tflite", 1, 0, 10, BenchmarkModelOptions("bm", False, True, True))
    assert accelerated[-3:] == ["--use_xnnpack=false", "--use_gpu=true", "--use_nnapi=true"]


def test_adb_devices_listing():
    listing = "* daemon started successfully\nList of devices attached\nR58M123\tdevice\nemulator-5554\tunauthorized\n"
    assert attached_devices("List of devices attached\n" + listing.split("attached\n")[1]) == \
        {"R58M123": "device", "emulator-5554": "unauthorized"}
    assert attached_devices("List of devices attached\n\n") == {}


def _stand_in_adb(folder: Path, recorded: str) -> Path:
    """An ``adb`` that logs its arguments and answers as one attached device: pushed files are kept (as files named
    after their device path) so ``test -f`` and ``mv`` work, and its benchmark_model prints ``recorded`` (a real
    output from tests/data)."""
    log, files = folder / "adb.log", folder / "device-files"
    files.mkdir()
    script = folder / "adb"
    script.write_text(f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
open({str(log)!r}, "a").write(" ".join(args) + "\\n")
def stored(path):
    return os.path.join({str(files)!r}, path.replace("/", "_"))
command = args[-1].split() if "shell" in args else []
if args == ["devices"]:
    print("List of devices attached\\nR58M123\\tdevice")
elif "push" in args:
    open(stored(args[-1]), "w").close()
elif command[:1] == ["mv"]:
    os.replace(stored(command[1]), stored(command[2]))
elif command[:2] == ["test", "-f"]:
    print("present" if os.path.exists(stored(command[2])) else "absent")
elif command[:2] == ["getprop", "ro.product.model"]:
    print("SM-TEST")
elif command and command[0].endswith("benchmark_model"):
    sys.stdout.write(open({str(DATA / recorded)!r}).read())
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_benchmark_pushes_once_and_reports_rows_and_fallbacks(tmp_path):
    adb = _stand_in_adb(tmp_path, "nnapi_partial_delegation_logcat.txt")
    model = tmp_path / "face.tflite"
    model.write_bytes(b"TFL3 model bytes")
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    device = AdbDevice(None, BenchmarkModelOptions(str(binary), use_nnapi=True), adb=str(adb))
    report = device.benchmark(model, BenchmarkSettings((640, 640), (1,), (1, 4), 2, 20))
    assert report.device == "adb:R58M123" and report.facts["model"] == "SM-TEST"
    assert [(row["threads"], row["mean_ms"], row["iterations"]) for row in report.rows] == [(1, 12.168, 75),
                                                                                           (4, 12.168, 75)]
    assert len(report.notes) == 2 and all("partially executed" in note for note in report.notes)
    runs = [call for call in (tmp_path / "adb.log").read_text().splitlines() if "--graph=" in call]
    assert "--num_threads=4 --warmup_runs=2 --num_runs=20 --use_nnapi=true" in runs[1]
    device.benchmark(model, BenchmarkSettings((640, 640), (1,), (1,), 2, 20))
    calls = (tmp_path / "adb.log").read_text().splitlines()
    model_pushes = [call for call in calls if " push " in f" {call} " and call.endswith(".tflite.partial")]
    assert len(model_pushes) == 1  # the second run found it on the device
    assert all(call.startswith("-s R58M123 ") for call in calls if call != "devices")


def test_evaluate_and_batches_other_than_one_are_refused_over_adb(tmp_path):
    adb = _stand_in_adb(tmp_path, "yolov5s_fp32_cpu_mi11.txt")
    model = tmp_path / "face.tflite"
    model.write_bytes(b"TFL3")
    device = AdbDevice("R58M123", BenchmarkModelOptions("/data/local/tmp/benchmark_model"), adb=str(adb))
    report = device.benchmark(model, BenchmarkSettings((640, 640), (1, 4), (1,), 1, 5))
    assert report.rows[0]["mean_ms"] == 249.684 and report.rows[0]["peak_rss_mb"] == 138.809
    assert "own batch size" in report.rows[1]["error"]
    from featherface_deploy.remote.remote_evaluate import evaluate_on_device

    with pytest.raises(DeviceError, match="over ssh only"):
        evaluate_on_device(device, model, tmp_path)


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "featherface_deploy.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)


def test_no_device_attached_is_a_clear_error_with_the_real_adb(tmp_path):
    if shutil.which("adb") is None:
        pytest.skip("adb not installed (Debian: apt-get install adb)")
    with socket.socket() as probe:  # a private adb server port, so no user's server is touched
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))
    model = tmp_path / "face.tflite"
    model.write_bytes(b"TFL3")
    try:
        done = _cli("benchmark", model, "--remote", "adb", "--benchmark-binary", "/data/local/tmp/benchmark_model",
                    env=env)
    finally:
        subprocess.run(["adb", "-P", str(port), "kill-server"], capture_output=True, timeout=30, env=env)
    assert done.returncode == 1
    assert "adb: no Android device attached" in done.stderr


def test_adb_without_benchmark_binary_says_where_it_comes_from(tmp_path):
    model = tmp_path / "face.tflite"
    model.write_bytes(b"TFL3")
    done = _cli("benchmark", model, "--remote", "adb:R58M123")
    assert done.returncode == 1 and "--benchmark-binary" in done.stderr and "benchmark_model" in done.stderr
