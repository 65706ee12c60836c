"""The decode contract inside each format's own metadata slot: one module per format.

- :mod:`.onnx`: ``metadata_props`` of an ONNX model.
- :mod:`.tflite`: the flatbuffer's ``metadata`` list.
- :mod:`.coreml`: an ML Program's ``user_defined_metadata``.

TensorRT engines carry theirs in the sidecar only (:func:`featherface_deploy.contract.read_sidecar`):
nothing is prepended to the engine bytes. Readers need only the standard library,
numpy and the format's own runtime; writers are called by the exporters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from featherface_deploy.contract import METADATA_KEY, DecodeContract, reconcile


def read_model_contract(path: str | Path) -> DecodeContract:
    """The contract of an exported model file by the one rule (embedded copy and sidecar agree), for tools
    that show or ship it (``info``, bundles) without running the model.

    TFLite and ONNX metadata are read directly; a Core ML package through its runtime when it can open here;
    a TensorRT engine (and any file whose reader is not installed) from its sidecar.

    Raises:
        ContractError: No contract, an invalid or edited one, or an embedded copy and a sidecar that disagree.
        BackendNotInstalledError: Reading it needs a package that is not installed, and there is no sidecar.
    """
    from featherface_deploy.formats import format_for_path, resolve

    path = Path(path)
    row = format_for_path(path)
    if row.family == "tflite":
        from featherface_deploy.metadata.tflite import read_contract

        return reconcile(read_contract(path.read_bytes(), str(path)), path, str(path))
    if row.family == "onnx":
        try:
            from featherface_deploy.metadata.onnx import read_contract

            return read_contract(path)
        except ImportError:
            pass
    if row.family != "engine" and row.runs_here()[0]:
        return resolve(row.runtime)(path).contract
    return reconcile(None, path, str(path))


def contract_from_entries(entries: Mapping[str, str], path: Path | None, source: str, missing: str) -> DecodeContract:
    """The contract under :data:`~featherface_deploy.contract.METADATA_KEY` in a format's metadata entries
    and ``path``'s sidecar, by the one rule of :func:`~featherface_deploy.contract.reconcile`.

    Raises:
        ContractError: Neither holds a valid one (``missing`` is the message when there is no path), or they
            disagree.
    """
    embedded = (DecodeContract.from_json(entries[METADATA_KEY], source=f"{source} (metadata)")
                if METADATA_KEY in entries else None)
    return reconcile(embedded, path, source, None if path is not None else missing)
