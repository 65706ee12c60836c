"""The decode contract in a Core ML model's ``user_defined_metadata`` (key :data:`~featherface_deploy.contract.METADATA_KEY`)."""

from __future__ import annotations

from pathlib import Path

from featherface_deploy.contract import METADATA_KEY, DecodeContract, read_sidecar
from featherface_deploy.errors import ContractError


def write_contract(mlmodel, contract: DecodeContract) -> None:
    """Stores ``contract`` in a ``coremltools.models.MLModel``'s metadata (saved with the package)."""
    mlmodel.user_defined_metadata[METADATA_KEY] = contract.to_json()


def read_contract(model, path: Path | None) -> DecodeContract:
    """The contract in ``model``'s metadata (an ``MLModel`` or a spec reader), else in ``path``'s sidecar.

    Raises:
        ContractError: Neither holds a valid one.
    """
    metadata = dict(model.user_defined_metadata)
    if METADATA_KEY in metadata:
        return DecodeContract.from_json(metadata[METADATA_KEY], source=f"{path or 'injected model'} (metadata)")
    if path is not None:
        return read_sidecar(path)
    raise ContractError(f"the injected Core ML model has no '{METADATA_KEY}' metadata; pass contract=… "
                        "or export it with `featherface-deploy export`")
