"""The decode contract in a Core ML model's ``user_defined_metadata`` (key :data:`~featherface_deploy.contract.METADATA_KEY`)."""

from __future__ import annotations

from pathlib import Path

from featherface_deploy.contract import METADATA_KEY, DecodeContract
from featherface_deploy.metadata import contract_from_entries


def write_contract(mlmodel, contract: DecodeContract) -> None:
    """Stores ``contract`` in a ``coremltools.models.MLModel``'s metadata (saved with the package)."""
    mlmodel.user_defined_metadata[METADATA_KEY] = contract.to_json()


def read_contract(model, path: Path | None) -> DecodeContract:
    """The contract in ``model``'s metadata (an ``MLModel`` or a spec reader), else in ``path``'s sidecar.

    Raises:
        ContractError: Neither holds a valid one.
    """
    return contract_from_entries(dict(model.user_defined_metadata), path, str(path or "injected model"),
                                 f"the injected Core ML model has no '{METADATA_KEY}' metadata; pass contract=… "
                                 "or export it with `featherface-deploy export`")
