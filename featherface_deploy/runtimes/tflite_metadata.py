"""Reads the named metadata entries of a ``.tflite`` flatbuffer (standard library only).

A TFLite model carries ``metadata: [Metadata{name, buffer}]`` whose buffers hold
arbitrary bytes; the exporter stores the decode contract there under
:data:`~featherface_deploy.contract.METADATA_KEY`. This reader walks just the
few tables it needs with ``struct``, so the runtime side needs neither
TensorFlow, nor the schema module of one particular LiteRT wheel, nor torch.
The writer lives with the exporters (``exporters/tflite_metadata.py``).

Field slots follow ``tensorflow/compiler/mlir/lite/schema/schema.fbs``:
``Model.buffers`` = 4, ``Model.metadata`` = 6; ``Metadata.name`` = 0,
``Metadata.buffer`` = 1; ``Buffer.data`` = 0, ``offset`` = 1, ``size`` = 2.
"""

from __future__ import annotations

import struct

from featherface_deploy.contract import METADATA_KEY, DecodeContract
from featherface_deploy.errors import ContractError

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
