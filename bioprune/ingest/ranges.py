"""Byte ranges of one large uncompressed FASTA, so that several route jobs can share the file.

A range [start, end) owns every record whose header begins at a byte offset in [start, end). A
header is a '>' at a line start, plus the file's first '>' (after the leading whitespace that
check_fasta allows). Range 0 thus starts at the first record; range r > 0 at the first header at
or after `start`; each range stops before the first header at or after its `end`. The ranges of a
file partition its records, in order, whatever their number; a range whose bytes hold no header
start (inside one long record) owns no record. Gzipped files are never split (no seeking).

Record numbers stay per file without any job reading the bytes before its range: a range job
numbers its records from 1 and stores its record count; the gather adds the counts of the file's
earlier ranges. Only an error raised inside a range job counts the headers before the range
(`records_before`, a bytes.count over the prefix at GB/s), to name the record's number in the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Iterable, Iterator

READ = 1 << 22  # bytes read at a time


def byte_ranges(size: int, split_bytes: int) -> list[tuple[int, int]]:
    """ceil(size / split_bytes) ranges of (nearly) equal length covering [0, size); one when
    split_bytes is 0 or the file is not larger than it."""
    if split_bytes <= 0 or size <= split_bytes:
        return [(0, size)]
    n = -(-size // split_bytes)
    return [(size * r // n, size * (r + 1) // n) for r in range(n)]


def file_spans(path: str | os.PathLike, split_bytes: int) -> list[dict | None]:
    """The byte ranges of one input file as route-job spans ({index, count, start, end, size}), or
    [None] (route the whole file in one job) for a small, gzipped or not yet existing file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
    except OSError:
        return [None]
    ranges = byte_ranges(size, split_bytes)
    if gz or len(ranges) == 1:
        return [None]
    return [{"index": r, "count": len(ranges), "start": a, "end": b, "size": size} for r, (a, b) in enumerate(ranges)]


def part_name(file_index: int, span: dict | None) -> str:
    """Part file of a route job, named so that sorted names are in (file, byte range) order."""
    return f"{file_index:05d}_{span['index'] if span else 0:05d}.h5"


def split_bytes(split_mb: float) -> int:
    """corpus.split_mb in bytes (1 MB = 2**20 bytes)."""
    return int(round(float(split_mb) * (1 << 20)))


def first_header(fh: IO[bytes]) -> int:
    """Offset of the first record's '>' (check_fasta has checked that only whitespace precedes it,
    within the first 4096 bytes)."""
    fh.seek(0)
    head = fh.read(4096)
    return len(head) - len(head.lstrip())


def header_at_or_after(fh: IO[bytes], pos: int, first: int) -> int:
    """Offset of the first record header at or after `pos` (the file size when there is none)."""
    if pos <= first:
        return first
    at = pos - 1
    fh.seek(at)
    carry = b""
    while True:
        chunk = fh.read(READ)
        buf = carry + chunk
        i = buf.find(b"\n>")
        if i >= 0:
            return at + i + 1
        if not chunk:
            return at + len(buf)
        at += len(buf) - 1
        carry = buf[-1:]


def count_headers(fh: IO[bytes], first: int, stop: int) -> int:
    """Number of record headers in [first, stop), `first` being the first record's offset."""
    if stop <= first:
        return 0
    fh.seek(first)
    n, prev, left = 1, b"", stop - first
    while left > 0:
        chunk = fh.read(min(READ, left))
        if not chunk:
            break
        left -= len(chunk)
        n += chunk.count(b"\n>") + (prev == b"\n" and chunk[:1] == b">")
        prev = chunk[-1:]
    return n


def span_bounds(fh: IO[bytes], span: dict | None) -> tuple[int, int]:
    """Byte offsets [begin, stop) of the records a span owns (begin and stop at record headers)."""
    first = first_header(fh)
    if span is None:
        return first, fh.seek(0, os.SEEK_END)
    return header_at_or_after(fh, span["start"], first), header_at_or_after(fh, span["end"], first)


def records_before(path: str | os.PathLike, span: dict | None) -> int:
    """Records of the file before the span's first record (0 for the whole file); error path only."""
    if span is None or span["index"] == 0:
        return 0
    with open(path, "rb") as fh:
        first = first_header(fh)
        return count_headers(fh, first, header_at_or_after(fh, span["start"], first))


def record_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut byte chunks into blocks that each end at a record boundary (the last holds the tail)."""
    rest = b""
    for chunk in chunks:
        buf = rest + chunk
        cut = buf.rfind(b"\n>")
        if cut < 0:
            rest = buf
            continue
        yield buf[: cut + 1]
        rest = buf[cut + 1:]
    if rest:
        yield rest


def span_blocks(path: Path, span: dict, block: int) -> Iterator[bytes]:
    """The bytes of the records a span owns, in blocks that each end at a record boundary."""
    with open(path, "rb") as fh:
        begin, stop = span_bounds(fh, span)
        fh.seek(begin)

        def reads() -> Iterator[bytes]:
            left = stop - begin
            while left > 0:
                chunk = fh.read(min(block, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        yield from record_blocks(reads())
