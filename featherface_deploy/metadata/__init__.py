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

from featherface_deploy.contract import METADATA_KEY, DecodeContract, read_sidecar
from featherface_deploy.errors import ContractError


def contract_from_entries(entries: Mapping[str, str], path: Path | None, source: str, missing: str) -> DecodeContract:
    """The contract under :data:`~featherface_deploy.contract.METADATA_KEY` in a format's metadata entries,
    else in ``path``'s sidecar.

    Raises:
        ContractError: Neither holds a valid one (``missing`` is the message when there is no path).
    """
    if METADATA_KEY in entries:
        return DecodeContract.from_json(entries[METADATA_KEY], source=f"{source} (metadata)")
    if path is not None:
        return read_sidecar(path)
    raise ContractError(missing)
