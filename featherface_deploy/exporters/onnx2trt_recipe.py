"""ONNX → a TensorRT build recipe: a folder to copy to a Jetson or GPU server and build there with ``trtexec``.

The folder holds only what the build needs and refers to nothing outside it:

- ``model.onnx``: the graph for that TensorRT version (DCN lowering and opset
  from :mod:`~featherface_deploy.trt.versions`; rewritten to the parser's opset
  by :mod:`~featherface_deploy.trt.opset` and checked equal through the runtime the pipeline supplies),
  checked by :func:`~featherface_deploy.trt.graph_check.check_graph`;
- ``model.onnx.json``: the decode contract (``build.sh`` copies it to ``model.engine.json``,
  the engine's sidecar: never bytes prepended to the engine);
- ``calib.cache``: for INT8 on 8.x, the legacy calibration cache;
- ``build.sh``: the exact ``trtexec`` command; ``README.md``: the steps.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.contract import DecodeContract, atomic_write_bytes, write_sidecar
from featherface_deploy.errors import ExportError
from featherface_deploy.metadata.onnx import write_contract
from featherface_deploy.trt.graph_check import check_graph
from featherface_deploy.trt.opset import default_opset, downgrade_opset
from featherface_deploy.trt.versions import TrtVersion

import onnx  # noqa: E402  (graph_check above reported a missing onnx with its extra)

from featherface_deploy.exporters.end2end_compose import tail_node_names  # noqa: E402  (needs onnx)

MODEL_FILE, CACHE_FILE, ENGINE_FILE = "model.onnx", "calib.cache", "model.engine"
TIMING_CACHE_FILE = "timing.cache"
DEFAULT_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack and NVIDIA's containers install it
# (ONNX file, {input: array}) → {output: array}, every output: the pipeline passes ``ExportContext.run_onnx``.
RunOnnx = Callable[[Path, dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class RecipeOptions:
    """What the recipe builds.

    Attributes:
        version: The device's TensorRT.
        precision: ``fp32``, ``fp16`` or ``int8``.
        workspace_mib: Builder workspace (``--memPoolSize=workspace:…``).
        dla_core: Jetson DLA core to build for (GPU fallback allowed), or ``None``.
    """

    version: TrtVersion
    precision: str = "fp16"
    workspace_mib: int = 2048
    dla_core: int | None = None

    def validate(self) -> None:
        """Raises :class:`ExportError` for a combination TensorRT cannot build."""
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ExportError(f"unknown precision '{self.precision}'; choose fp32, fp16 or int8")
        if self.precision == "fp16" and self.version.strongly_typed:
            raise ExportError("TensorRT 11 removed BuilderFlag.FP16: it builds FP16 only from an FP16/mixed ONNX "
                              "(ModelOpt AutoCast), which this project does not write; use --trt-version 10.x, "
                              "or FP32 / --int8 on 11.x")
        if self.workspace_mib < 1 or (self.dla_core is not None and self.dla_core < 0):
            raise ExportError("workspace must be ≥ 1 MiB and the DLA core ≥ 0")


def trtexec_args(options: RecipeOptions, has_cache: bool, fp32_layers: tuple[str, ...] = ()) -> list[str]:
    """The ``trtexec`` arguments (files relative to the recipe folder).

    ``fp32_layers``: layers (ONNX node names, which the parser gives its layers) pinned to FP32 under
    ``--fp16``/``--int8``: ``--precisionConstraints=obey`` with ``--layerPrecisions`` and
    ``--layerOutputTypes`` (an end-to-end graph's decoding, NMS and gather).
    """
    args = [f"--onnx={MODEL_FILE}", f"--saveEngine={ENGINE_FILE}", f"--memPoolSize=workspace:{options.workspace_mib}",
            f"--timingCacheFile={TIMING_CACHE_FILE}"]
    if options.version.strongly_typed:
        args.append("--stronglyTyped")  # 11.x: precision comes from the ONNX types and Q/DQ only
    elif options.precision == "fp16":
        args.append("--fp16")
    elif options.precision == "int8":
        args.append("--int8")  # 10.x: honours the Q/DQ nodes; 8.x: implicit INT8 from the cache below
        if has_cache:
            args.append(f"--calib={CACHE_FILE}")
    if fp32_layers and options.precision != "fp32" and not options.version.strongly_typed:
        pinned = ",".join(f"{name}:fp32" for name in fp32_layers)
        args += ["--precisionConstraints=obey", f"--layerPrecisions={pinned}", f"--layerOutputTypes={pinned}"]
    if options.dla_core is not None:
        args += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    return args


def build_script(options: RecipeOptions, has_cache: bool, fp32_layers: tuple[str, ...] = ()) -> str:
    """``build.sh``: runs ``trtexec`` in the folder and writes the engine's sidecar."""
    command = " ".join(shlex.quote(a) for a in trtexec_args(options, has_cache, fp32_layers))
    return (
        "#!/usr/bin/env bash\n"
        f"# Builds {ENGINE_FILE} for TensorRT {options.version.name} ({options.precision}) on this device.\n"
        "set -euo pipefail\n"
        'cd "$(dirname "$0")"\n'
        f'TRTEXEC="${{TRTEXEC:-{DEFAULT_TRTEXEC}}}"\n'
        f'"$TRTEXEC" {command}\n'
        f"cp {MODEL_FILE}.json {ENGINE_FILE}.json\n"
        f'echo "built {ENGINE_FILE} and {ENGINE_FILE}.json"\n'
    )


def write_recipe(source: str | Path, out_dir: str | Path, options: RecipeOptions, contract: DecodeContract,
                 calibration_scales: dict[str, float] | None = None, run_onnx: RunOnnx | None = None) -> Path:
    """Writes the recipe folder from an ONNX model already in the version's DCN lowering.

    Args:
        source: The ONNX model (FP32, or QDQ INT8 for ``qdq`` versions).
        out_dir: The folder to write (created).
        options: Version, precision, workspace, DLA.
        contract: The model's decode contract (gets ``extra["tensorrt"]``).
        calibration_scales: INT8 on 8.x: ``{tensor: scale}`` for ``calib.cache``.
        run_onnx: Runs an ONNX file (the pipeline's ``ExportContext.run_onnx``), to check that an opset
            rewrite kept every output; without it that check is left to the pipeline's parity gate, which
            compares ``model.onnx`` with PyTorch.

    Returns:
        The folder.

    Raises:
        ExportError: The graph does not fit the version (one problem per line), or the opset rewrite
            changed the outputs.
    """
    from featherface_deploy.trt.calib_cache import write_cache

    options.validate()
    version, out_dir = options.version, Path(out_dir)
    legacy_int8 = options.precision == "int8" and version.int8 == "calibration-cache"
    if legacy_int8 and not calibration_scales:
        raise ExportError(f"INT8 on TensorRT {version.name} needs the calibration cache's scales")
    model = onnx.load(str(source))
    _refuse([p for p in check_graph(model, version) if p.rule != "opset"], version)  # the opset is rewritten below
    written = downgrade_opset(model, version.max_opset)
    if default_opset(written) != default_opset(model) and run_onnx is not None:
        _check_same_outputs(Path(source), written, contract, run_onnx)
    _refuse(check_graph(written, version), version)
    fp32_layers = tuple(tail_node_names(written, contract.end2end.raw_tensors)) if contract.in_graph else ()
    facts = {"version": version.name, "precision": options.precision, "opset": default_opset(written),
             "dcn": version.dcn, "int8": version.int8 if options.precision == "int8" else None,
             "trtexec": trtexec_args(options, legacy_int8, fp32_layers), "jetpack": version.jetpack}
    recipe_contract = contract.replace(extra={**contract.extra, "tensorrt": facts})
    write_contract(written, recipe_contract)
    atomic_write_bytes(out_dir / MODEL_FILE, written.SerializeToString())
    write_sidecar(recipe_contract, out_dir / MODEL_FILE)
    if legacy_int8:
        write_cache(out_dir / CACHE_FILE, calibration_scales, version)
    script = out_dir / "build.sh"
    atomic_write_bytes(script, build_script(options, legacy_int8, fp32_layers).encode("utf-8"))
    script.chmod(0o755)
    atomic_write_bytes(out_dir / "README.md", _readme(options, legacy_int8).encode("utf-8"))
    return out_dir


def _refuse(problems: list, version: TrtVersion) -> None:
    if problems:
        raise ExportError(f"the ONNX does not fit TensorRT {version.name}:\n"
                          + "\n".join(p.format() for p in problems))


def _check_same_outputs(source: Path, rewritten: "onnx.ModelProto", contract: DecodeContract,
                        run_onnx: RunOnnx) -> None:
    """Runs ``source`` and its opset rewrite on one random input through ``run_onnx``; refuses a difference."""
    size = contract.input_size or (64, 64)
    sample = np.random.default_rng(0).normal(scale=50, size=(1, 3, *size)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="featherface-opset-") as scratch:
        written = Path(scratch) / MODEL_FILE
        onnx.save(rewritten, str(written))
        before, after = (run_onnx(path, {contract.input_name: sample}) for path in (source, written))
    worst = max(float(np.abs(before[name] - after[name]).max()) for name in before)
    if worst > 1e-5:
        raise ExportError(f"rewriting the ONNX to opset {default_opset(rewritten)} changed its outputs "
                          f"(max |Δ| {worst:.3g})")


def _readme(options: RecipeOptions, has_cache: bool) -> str:
    version = options.version
    where = f" ({version.jetpack})" if version.jetpack else ""
    cache = f"- `{CACHE_FILE}`: INT8 calibration cache (legacy implicit INT8 of TensorRT 8.x)\n" if has_cache else ""
    return (
        f"# FeatherFace TensorRT build recipe: TensorRT {version.name}{where}, {options.precision}\n\n"
        f"- `{MODEL_FILE}`: opset and DCN lowering for this TensorRT (`{version.dcn}` DCN)\n"
        f"- `{MODEL_FILE}.json`: the decode contract\n{cache}"
        "- `build.sh`: the `trtexec` command\n\n"
        "On the device (TensorRT's `trtexec` is in `/usr/src/tensorrt/bin` on JetPack; set `TRTEXEC` otherwise):\n\n"
        "```bash\nbash build.sh\n"
        f"featherface-deploy benchmark {ENGINE_FILE}   # needs pip install featherface-deploy[tensorrt]; "
        f"reads {ENGINE_FILE}.json\n"
        f"featherface-deploy detect photo.jpg --model {ENGINE_FILE}\n"
        "```\n\n"
        f"The engine only runs on the TensorRT version and GPU it was built on: build it on the device.\n"
    )
