"""Length-prefixed JSON messages over pipe file descriptors (both sides of the sandbox use it)."""

from __future__ import annotations

import json
import os
import struct

HEADER = struct.Struct(">I")
MAX_MESSAGE = 64 << 20  # a reply larger than this is refused rather than buffered


def encode(message: dict) -> bytes:
    """The bytes of one message: a 4-byte big-endian length, then UTF-8 JSON."""
    body = json.dumps(message, ensure_ascii=False).encode("utf-8")
    return HEADER.pack(len(body)) + body


def send(fd: int, message: dict) -> None:
    """Write one whole message to `fd` (blocking)."""
    data = memoryview(encode(message))
    while data:
        data = data[os.write(fd, data):]


def read_exact(fd: int, size: int) -> bytes | None:
    """Read exactly `size` bytes (blocking); None at end of file."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> dict | None:
    """Read one message (blocking); None when the other side closed the pipe."""
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes is over the {MAX_MESSAGE} byte limit")
    body = read_exact(fd, size)
    return None if body is None else json.loads(body.decode("utf-8"))


class Decoder:
    """Collects bytes read without blocking and yields whole messages as they complete."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> dict | None:
        """Add bytes; return a complete message when one has arrived."""
        self.buffer += data
        if len(self.buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self.buffer)
        if size > MAX_MESSAGE:
            raise ValueError(f"message of {size} bytes is over the {MAX_MESSAGE} byte limit")
        if len(self.buffer) < HEADER.size + size:
            return None
        body = bytes(self.buffer[HEADER.size:HEADER.size + size])
        del self.buffer[:HEADER.size + size]
        return json.loads(body.decode("utf-8"))
