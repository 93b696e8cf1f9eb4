"""Frames between a process and the worker processes it started: a 4-byte length and a pickle,
over a socketpair. Only the parent and its own children hold the socket, so unpickling trusts
no one else's bytes (oracle workers: oracles.workers; grading workers: oracles.grading_pool)."""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct("!I")


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any:
    size = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
    return pickle.loads(await reader.readexactly(size))


def read_frame_blocking(stream: BinaryIO) -> Any:
    """The next frame from a blocking stream; EOFError when the other side has closed it."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError
    size = HEADER.unpack(header)[0]
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)
