"""Writes named metadata entries into a ``.tflite`` flatbuffer (no TensorFlow).

The decode contract goes into the model's own ``metadata`` list (a named
entry pointing at a buffer), which every LiteRT interpreter ignores and every
flatbuffer reader can list. Nothing is prepended or appended to the file.
Entries already there (``min_runtime_version``, ``CONVERSION_METADATA``…) are
kept; an entry of the same name is replaced.

Uses the schema module shipped in ``ai-edge-litert`` and ``flatbuffers``. The
reader is :mod:`featherface_deploy.runtimes.tflite_metadata` (standard library
only), re-exported here.
"""

from __future__ import annotations

import numpy as np

from featherface_deploy.contract import METADATA_KEY, DecodeContract
from featherface_deploy.errors import ExportError, missing_backend
from featherface_deploy.runtimes.tflite_metadata import FILE_IDENTIFIER, read_contract, read_metadata

__all__ = ["add_metadata", "embed_contract", "read_contract", "read_metadata"]


def _schema():
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise missing_backend("ai_edge_litert", "tflite-export") from error
    return flatbuffers, schema_py_generated


def unpack_model(data: bytes):
    """Returns the mutable ``ModelT`` of a TFLite flatbuffer, every buffer inline (ready to re-pack)."""
    _, schema = _schema()
    if data[4:8] != FILE_IDENTIFIER:
        raise ExportError("not a TFLite model (no 'TFL3' file identifier)")
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    _inline_buffers(model, data)
    return model


def pack_model(model) -> bytes:
    """Serialises a ``ModelT`` with the ``TFL3`` file identifier."""
    flatbuffers, _ = _schema()
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _inline_buffers(model, data: bytes) -> None:
    """Moves buffers stored after the flatbuffer (offset/size; ai-edge-quantizer writes them so) inline.

    Re-packing changes the flatbuffer's length, so offsets into the old file would dangle.

    Raises:
        ExportError: The model would exceed the 2 GB flatbuffer limit inline.
    """
    total = 0
    for buffer in model.buffers or []:
        if buffer.offset > 1:  # 0 and 1 are "no external data" markers
            buffer.data = np.frombuffer(data, dtype=np.uint8, count=buffer.size, offset=buffer.offset)
            buffer.offset = buffer.size = 0
        total += 0 if buffer.data is None else len(buffer.data)
    if total >= 2**31 - 2**24:
        raise ExportError("the model is too large (> 2 GB) for an inline TFLite flatbuffer")


def add_metadata(data: bytes, entries: dict[str, bytes]) -> bytes:
    """Returns the model with the named metadata entries set (others kept).

    Args:
        data: A ``.tflite`` flatbuffer.
        entries: ``{name: payload}``; an existing entry of the same name is replaced.

    Raises:
        ExportError: Not a TFLite flatbuffer, or a model over 2 GB (buffers outside the flatbuffer).
    """
    _, schema = _schema()
    model = unpack_model(data)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode("utf-8") not in entries]
    for name, payload in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buffer)
        metadata = schema.MetadataT()
        metadata.name = name
        metadata.buffer = len(model.buffers) - 1
        model.metadata.append(metadata)
    return pack_model(model)


def embed_contract(data: bytes, contract: DecodeContract) -> bytes:
    """Returns the model with the decode contract stored under :data:`METADATA_KEY`, checked by reading it back.

    Raises:
        ExportError: The contract did not survive the round trip.
    """
    out = add_metadata(data, {METADATA_KEY: contract.to_json().encode("utf-8")})
    if read_contract(out) != contract:
        raise ExportError("the decode contract written into the TFLite metadata does not read back identically")
    return out
