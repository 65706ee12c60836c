"""The ssh runner: a device bundle copied once (cached by content hash), run there, its JSON fetched.

On the device, under the cache folder of the ``ssh://`` URL (default ``~/.cache/featherface-deploy``)::

    bundles/<bundle digest>/run.py ...     unpacked by the device's Python, renamed into place when complete
    packs/<pack digest>.npz                image packs, renamed into place when complete

So a second run of the same model and images copies nothing, and an interrupted copy leaves no half bundle.
Each (threads, batch) configuration of a benchmark is one remote run, so a crash in one keeps the rows of the
others; a lost connection ends the run and marks the configurations that were not run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from featherface_deploy.errors import ConnectionLostError, DeviceError
from featherface_deploy.remote.bundle import build_bundle
from featherface_deploy.remote.image_pack import PackedImage, pack_digest, write_pack
from featherface_deploy.remote.runs import BenchmarkSettings, DeviceReport
from featherface_deploy.remote.ssh import SshClient

RESULT_SCHEMA = "featherface-deploy/device-result/1"
SMALL_STEP_TIMEOUT_S = 60.0
HOST_GRACE_S = 30.0  # the host waits this much longer than the device's own limit, to hear why a run stopped
_PROBE = ("import json, os, sys\n"
          "print(json.dumps({'python': sys.version.split()[0], 'exists': [os.path.exists(p) for p in sys.argv[1:]]}))")
_UNPACK = ("import os, shutil, sys, zipfile\n"
           "archive, final = sys.argv[1:3]\n"
           "partial = final + '.partial'\n"
           "shutil.rmtree(partial, ignore_errors=True)\n"
           "zipfile.ZipFile(archive).extractall(partial)\n"
           "os.remove(archive)\n"
           "shutil.rmtree(partial) if os.path.isdir(final) else os.replace(partial, final)\n")


class SshDevice:
    """A Linux board, Jetson or Mac reached over ssh, running device bundles.

    Args:
        client: The connection.
        python: The device's Python (``--python``), ≥ 3.8 with numpy and the model's runtime.
        timeout_s: Limit of each copy or run step (small steps get :data:`SMALL_STEP_TIMEOUT_S`).
    """

    runner = "ssh"

    def __init__(self, client: SshClient, python: str = "python3", timeout_s: float = 600.0) -> None:
        self.client = client
        self.python = python
        self.timeout_s = timeout_s

    @property
    def name(self) -> str:
        """The device as messages name it."""
        return self.client.target.name

    def upload_bundle(self, model: str | Path) -> str:
        """Makes sure the device holds the bundle of ``model``; copies it only when it is not there yet.

        Returns:
            The bundle's folder on the device.

        Raises:
            DeviceError: A step failed (the message names it).
        """
        with tempfile.TemporaryDirectory(prefix="featherface-bundle-") as staging:
            built = build_bundle(model, Path(staging) / "bundle.zip")
            root = f"{self.client.target.cache}/bundles"
            folder = f"{root}/{built.digest}"
            if self._exists(folder + "/MANIFEST.json"):
                return folder
            self.client.run("create the cache folder", ["mkdir", "-p", root], SMALL_STEP_TIMEOUT_S)
            archive = f"{root}/.{built.digest}.zip"
            self.client.push(f"copy bundle {built.digest}", built.path, archive, self.timeout_s)
        self.client.run(f"unpack bundle {built.digest}", [self.python, "-c", _UNPACK, archive, folder],
                        self.timeout_s)
        return folder

    def upload_pack(self, entries: list[PackedImage]) -> str:
        """Makes sure the device holds this image pack; copies it only when it is not there yet.

        Returns:
            The pack's path on the device.
        """
        digest = pack_digest(entries)
        root = f"{self.client.target.cache}/packs"
        path = f"{root}/{digest}.npz"
        if self._exists(path):
            return path
        with tempfile.TemporaryDirectory(prefix="featherface-pack-") as staging:
            local = write_pack(entries, Path(staging) / "pack.npz")
            self.client.run("create the cache folder", ["mkdir", "-p", root], SMALL_STEP_TIMEOUT_S)
            self.client.push(f"copy image pack {digest} ({len(entries)} images)", local, f"{path}.partial",
                             self.timeout_s)
        self.client.run("finish the image pack copy", ["mv", f"{path}.partial", path], SMALL_STEP_TIMEOUT_S)
        return path

    def run_bundle(self, folder: str, command: str, arguments: list[str], step: str) -> dict:
        """Runs ``python run.py COMMAND ARGS`` in a bundle folder and returns its JSON result.

        Raises:
            DeviceError: The run failed, was killed, timed out, or printed no result.
        """
        limit = ["--time-limit", str(max(1, int(self.timeout_s)))]
        output = self.client.run(step, [self.python, "run.py", command, *arguments, *limit],
                                 self.timeout_s + HOST_GRACE_S, folder=folder)
        lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise DeviceError(f"{self.name}: {step}: the runner printed no JSON result") from None
        if not isinstance(result, dict) or result.get("schema") != RESULT_SCHEMA:
            raise DeviceError(f"{self.name}: {step}: unexpected result schema {result.get('schema')!r}"
                              if isinstance(result, dict) else f"{self.name}: {step}: result is not an object")
        return result

    def benchmark(self, model: str | Path, settings: BenchmarkSettings,
                  images: list[PackedImage] | None = None) -> DeviceReport:
        """Times ``model`` on the device, one remote run per (threads, batch), like the local ``benchmark``.

        Args:
            model: An ``.onnx``, ``.tflite`` or ``.engine`` file, or a ``.mlpackage``.
            settings: Sizes, thread counts, steps (and Core ML compute units).
            images: Images to cycle through, already fitted (``None``: the runner's synthetic images).

        Returns:
            The report; a failed configuration is an error row, the others keep their numbers.

        Raises:
            DeviceError: The bundle or pack could not be put on the device (nothing was measured).
        """
        report = DeviceReport(self.name, self.runner)
        folder = self.upload_bundle(model)
        common = ["--imgsz", f"{settings.imgsz[0]}x{settings.imgsz[1]}", "--warmup", str(settings.warmup),
                  "--iters", str(settings.iters)]
        if settings.compute_units is not None:
            common += ["--compute-units", settings.compute_units]
        if images:
            common += ["--images", _from_folder(self.upload_pack(images))]
        lost = None
        for threads in settings.threads:
            for batch in settings.batches:
                row = {"threads": threads, "batch": batch}
                if lost is not None:
                    report.add_error(row, f"not run: {lost}")
                    continue
                step = f"benchmark threads {threads} batch {batch}"
                try:
                    result = self.run_bundle(folder, "benchmark", common + ["--threads", str(threads),
                                                                            "--batch", str(batch)], step)
                except ConnectionLostError as error:
                    lost = str(error)
                    report.add_error(row, lost)
                    continue
                except DeviceError as error:
                    report.add_error(row, str(error))
                    continue
                report.facts = report.facts or result["facts"]
                report.facts_after = result.get("facts_after", {})
                report.rows.extend(result["rows"])
        return report

    def predict(self, model: str | Path, images: list[PackedImage], arguments: list[str]) -> dict:
        """Runs ``run.py evaluate`` on packed images and returns its result (``predictions`` and ``facts``)."""
        folder = self.upload_bundle(model)
        pack = _from_folder(self.upload_pack(images))
        return self.run_bundle(folder, "evaluate", ["--images", pack, *arguments],
                               f"evaluate {len(images)} images")

    def _exists(self, path: str) -> bool:
        output = self.client.run("check the device's Python and cache", [self.python, "-c", _PROBE, path],
                                 SMALL_STEP_TIMEOUT_S)
        try:
            return bool(json.loads(output.decode("utf-8", "replace").strip().splitlines()[-1])["exists"][0])
        except (IndexError, KeyError, ValueError):
            raise DeviceError(f"{self.name}: {self.python} did not answer the probe; is it Python >= 3.8? "
                              "(pass another with --python)") from None


def _from_folder(path: str) -> str:
    """A pack path as seen from inside a bundle folder: absolute as is, else relative (``../../packs/…``)."""
    return path if path.startswith("/") else "../../packs/" + path.rsplit("/", 1)[-1]
