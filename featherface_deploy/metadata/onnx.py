"""The decode contract in an ONNX model's ``metadata_props`` (key :data:`~featherface_deploy.contract.METADATA_KEY`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from featherface_deploy.contract import METADATA_KEY, DecodeContract
from featherface_deploy.metadata import contract_from_entries


def write_contract(proto, contract: DecodeContract) -> None:
    """Stores ``contract`` in an ``onnx.ModelProto``'s ``metadata_props``, replacing an older one."""
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, contract.to_json()


def contract_from_metadata(metadata: Mapping[str, str], path: Path | None, source: str) -> DecodeContract:
    """The contract in a metadata map (e.g. ONNX Runtime's ``custom_metadata_map``), else in ``path``'s sidecar.

    Raises:
        ContractError: Neither holds a valid one.
    """
    return contract_from_entries(metadata, path, source, f"{source}: the ONNX model has no '{METADATA_KEY}' "
                                 "metadata; pass contract=… or export it with `featherface-deploy export`")


def read_contract(path: str | Path) -> DecodeContract:
    """Reads an ONNX file's contract with the ``onnx`` package (export side), else its sidecar.

    Raises:
        ContractError: Neither holds a valid one.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return contract_from_metadata({p.key: p.value for p in model.metadata_props}, Path(path), str(path))
