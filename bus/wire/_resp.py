"""RESP2 packing: commands straight to bytes, without redis-py's per-argument encoding.

redis-py's pipeline machinery costs ~11 us of client CPU per queued command (argument
normalisation, one Python object per command, response callbacks). The publish and consume
fast paths instead pack their commands here and send them with one write (:mod:`._roundtrip`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

__all__ = ["DISCARD", "EXEC", "MULTI", "bulk", "header", "pack", "pack_command", "pack_many", "split_commands"]

MULTI = b"*1\r\n$5\r\nMULTI\r\n"
EXEC = b"*1\r\n$4\r\nEXEC\r\n"
DISCARD = b"*1\r\n$7\r\nDISCARD\r\n"

_HEADERS = [b"*%d\r\n" % n for n in range(64)]
_LENGTHS = [b"$%d\r\n" % n for n in range(256)]


def header(count: int) -> bytes:
    """The array header of a command with ``count`` arguments: ``*3\\r\\n``."""
    return _HEADERS[count] if count < 64 else b"*%d\r\n" % count


def bulk(value: bytes) -> bytes:
    """One bulk string: ``$5\\r\\nhello\\r\\n``."""
    n = len(value)
    return (_LENGTHS[n] if n < 256 else b"$%d\r\n" % n) + value + b"\r\n"


def pack(*args: bytes | str | int) -> bytes:
    """A whole command from its arguments (str is UTF-8 encoded, int written in decimal)."""
    parts = [header(len(args))]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(bulk(arg))
    return b"".join(parts)


def pack_many(commands: Iterable[tuple[bytes | str | int, ...]]) -> bytes:
    """Several commands back to back."""
    return b"".join(pack(*command) for command in commands)


def pack_command(head: Sequence[bytes | str], args: Sequence[bytes], *, ordered: bool = True) -> bytes:
    """RESP for ``head`` + ``args``; the many ``args`` (members, entry ids) are packed in one
    ``join`` when they share a length, as a batch of uuid members usually does.

    ``ordered=False`` (XACK's ids, SADD's members: the command ignores their order) packs ``args``
    grouped by length, one ``join`` per length: stream ids of a batch differ in length only where
    their sequence part gains a digit, so a few joins replace one format per id.
    """
    parts = [header(len(head) + len(args))]
    parts.extend(bulk(h.encode() if isinstance(h, str) else h) for h in head)
    if args:
        lengths = set(map(len, args))
        if len(lengths) == 1:
            size = b"$%d\r\n" % lengths.pop()
            parts += (size, (b"\r\n" + size).join(args), b"\r\n")
        elif not ordered:
            for n, run in itertools.groupby(sorted(args, key=len), len):
                size = b"$%d\r\n" % n
                parts += (size, (b"\r\n" + size).join(run), b"\r\n")
        else:
            parts += [b"$%d\r\n%b\r\n" % (len(a), a) for a in args]
    return b"".join(parts)


def split_commands(data: bytes, count: int) -> list[bytes]:
    """The first ``count`` packed commands of ``data`` (as :func:`pack` writes them), one bytes each."""
    out: list[bytes] = []
    pos = 0
    find = data.find
    for _ in range(count):
        start = pos
        end = find(b"\r\n", pos)
        if data[pos : pos + 1] != b"*" or end < 0:
            raise ValueError(f"not a packed command at byte {pos}")
        n_args = int(data[pos + 1 : end])
        pos = end + 2
        for _ in range(n_args):
            end = find(b"\r\n", pos)
            pos = end + 2 + int(data[pos + 1 : end]) + 2
        out.append(data[start:pos])
    return out
