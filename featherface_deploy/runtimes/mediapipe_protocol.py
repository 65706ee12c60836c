"""The framing between :class:`~featherface_deploy.runtimes.mediapipe_runtime.MediapipeRuntime` and its worker.

Each message is a 4-byte little-endian length, a JSON header of that length,
then ``header["bytes"]`` raw bytes (an image's pixels, uint8, row-major), so
images cross the pipe without any encoding. Standard library only: the worker
runs in the MediaPipe environment, which has none of the project's other
dependencies.
"""

from __future__ import annotations

import json
import struct
from typing import BinaryIO

_LENGTH = struct.Struct("<I")


def send(stream: BinaryIO, header: dict, payload: bytes = b"") -> None:
    """Writes one message (header + payload) and flushes."""
    text = json.dumps({**header, "bytes": len(payload)}).encode("utf-8")
    stream.write(_LENGTH.pack(len(text)) + text)
    if payload:
        stream.write(payload)
    stream.flush()


def receive(stream: BinaryIO) -> tuple[dict, bytes] | None:
    """Reads one message; ``None`` when the other side closed the pipe."""
    prefix = _read_exactly(stream, _LENGTH.size)
    if prefix is None:
        return None
    header_bytes = _read_exactly(stream, _LENGTH.unpack(prefix)[0])
    if header_bytes is None:
        return None
    header = json.loads(header_bytes)
    payload = _read_exactly(stream, header.get("bytes", 0)) if header.get("bytes") else b""
    return header, payload or b""


def _read_exactly(stream: BinaryIO, count: int) -> bytes | None:
    chunks, left = [], count
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
