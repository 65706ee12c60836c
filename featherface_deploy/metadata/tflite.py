"""The decode contract in a ``.tflite`` flatbuffer: read (standard library only) and write.

A TFLite model carries ``metadata: [Metadata{name, buffer}]`` whose buffers hold
arbitrary bytes; the exporter stores the decode contract there under
:data:`~featherface_deploy.contract.METADATA_KEY`. This reader walks just the
few tables it needs with ``struct``, so the runtime side needs neither
TensorFlow, nor the schema module of one particular LiteRT wheel, nor torch.
The writer (:func:`embed_contract`, exporters only) re-packs the flatbuffer
with the schema module shipped in ``ai-edge-litert`` and ``flatbuffers``,
imported only when called. The contract goes into the model's own
``metadata`` list (a named entry pointing at a buffer), which every LiteRT
interpreter ignores; nothing is prepended or appended to the file. Entries
already there (``min_runtime_version``, ``CONVERSION_METADATA``…) are kept; an
entry of the same name is replaced.

Field slots follow ``tensorflow/compiler/mlir/lite/schema/schema.fbs``:
``Model.buffers`` = 4, ``Model.metadata`` = 6; ``Metadata.name`` = 0,
``Metadata.buffer`` = 1; ``Buffer.data`` = 0, ``offset`` = 1, ``size`` = 2.
"""

from __future__ import annotations

import struct

import numpy as np

from featherface_deploy.contract import METADATA_KEY, DecodeContract
from featherface_deploy.errors import ContractError, ExportError, missing_backend

FILE_IDENTIFIER = b"TFL3"
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


class _Table:
    """A flatbuffer table at ``pos`` of ``data``."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos
        self.vtable = pos - struct.unpack_from("<i", data, pos)[0]
        self.vtable_size = struct.unpack_from("<H", data, self.vtable)[0]

    def _field(self, slot: int) -> int:
        entry = 4 + 2 * slot
        return struct.unpack_from("<H", self.data, self.vtable + entry)[0] if entry < self.vtable_size else 0

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        offset = self._field(slot)
        return struct.unpack_from("<" + fmt, self.data, self.pos + offset)[0] if offset else default

    def _vector(self, slot: int) -> tuple[int, int]:
        offset = self._field(slot)
        if not offset:
            return 0, 0
        at = self.pos + offset
        at += struct.unpack_from("<I", self.data, at)[0]
        return at + 4, struct.unpack_from("<I", self.data, at)[0]

    def bytes(self, slot: int) -> bytes:
        start, length = self._vector(slot)
        return bytes(self.data[start:start + length])

    def tables(self, slot: int) -> list["_Table"]:
        start, length = self._vector(slot)
        items = []
        for i in range(length):
            at = start + 4 * i
            items.append(_Table(self.data, at + struct.unpack_from("<I", self.data, at)[0]))
        return items


def read_metadata(data: bytes) -> dict[str, bytes]:
    """Returns ``{name: payload}`` of every metadata entry of a TFLite model.

    Args:
        data: The whole ``.tflite`` file.

    Raises:
        ContractError: The bytes are not a TFLite flatbuffer (or are truncated).
    """
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ContractError("not a TFLite model (no 'TFL3' file identifier)")
    try:
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        buffers = model.tables(_MODEL_BUFFERS)
        entries = {}
        for entry in model.tables(_MODEL_METADATA):
            name = entry.bytes(_METADATA_NAME).decode("utf-8")
            buffer = buffers[entry.scalar(_METADATA_BUFFER, "I")]
            payload = buffer.bytes(_BUFFER_DATA)
            offset = buffer.scalar(_BUFFER_OFFSET, "Q")
            if not payload and offset > 1:  # models > 2 GB keep buffers after the flatbuffer
                payload = bytes(data[offset:offset + buffer.scalar(_BUFFER_SIZE, "Q")])
            entries[name] = payload
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ContractError(f"the TFLite flatbuffer is malformed ({error})") from error
    return entries


def read_contract(data: bytes, source: str = "TFLite model") -> DecodeContract | None:
    """Returns the embedded decode contract, or ``None`` when the model has none.

    Raises:
        ContractError: The bytes are not TFLite, or the embedded contract is invalid.
    """
    try:
        payload = read_metadata(data).get(METADATA_KEY)
    except ContractError as error:
        raise ContractError(f"{source}: {error}") from error
    if payload is None:
        return None
    return DecodeContract.from_json(payload, source=f"{source} (metadata '{METADATA_KEY}')")


# --- writing (exporters) ----------------------------------------------------------------------


def flatbuffer_schema():
    """(``flatbuffers``, LiteRT's generated ``schema_py_generated``): what reads and writes a flatbuffer's object API.

    Raises:
        BackendNotInstalledError: ai-edge-litert is missing.
    """
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise missing_backend("ai_edge_litert", "tflite-export") from error
    return flatbuffers, schema_py_generated


def unpack_model(data: bytes):
    """Returns the mutable ``ModelT`` of a TFLite flatbuffer, every buffer inline (ready to re-pack)."""
    _, schema = flatbuffer_schema()
    if data[4:8] != FILE_IDENTIFIER:
        raise ExportError("not a TFLite model (no 'TFL3' file identifier)")
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    _inline_buffers(model, data)
    return model


def pack_model(model) -> bytes:
    """Serialises a ``ModelT`` with the ``TFL3`` file identifier."""
    flatbuffers, _ = flatbuffer_schema()
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
    _, schema = flatbuffer_schema()
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
