"""Stage files: NDJSON compressed with zstd, written and read in large blocks.

Every file of a run folder (raw, ECS, rejects, dead letter) is written through :func:`open_writer`
and read through :func:`open_lines` / :func:`open_text`:

- **zstd**, level 3: about 8x smaller than the NDJSON (1M indicators: ~4 GB of raw and ECS text
  become ~0.5 GB), at several hundred MB/s per core to write and over 1 GB/s to read, while gzip
  costs 3-5x more CPU per byte to write and 2-3x more to read for a worse ratio: at a million lines
  per run that is tens of seconds of the worker's core. ``zstd -dc`` / ``zstdcat`` (and ``zstd`` in
  every distribution) read them; the names end ``.ndjson.zst``.
- **Blocks**: Airflow's ``ObjectStoragePath`` file wrapper tracks every call for lineage; a line
  written or read through it costs more than the line itself. Lines go to a C buffer instead and
  reach the file as ~1 MiB blocks (compressed: far fewer), and reads pull 1 MiB at a time.
- **Transparent and backward compatible**: readers look at the first bytes, not the name, so a
  stage file written uncompressed by an earlier release (or by hand), or gzip-compressed, reads
  the same way.

Works on anything with ``open(mode)`` returning a binary file: an ``ObjectStoragePath`` (local,
``s3://``, ``gs://`` …) or a ``pathlib.Path``. No Airflow import.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Protocol

import zstandard

__all__ = ["BLOCK_SIZE", "ZSTD_LEVEL", "ZSTD_SUFFIX", "compression_of", "open_lines", "open_text", "open_text_writer",
           "open_writer", "read_text", "stage_name"]

#: Suffix added to the names of stage files written compressed.
ZSTD_SUFFIX = ".zst"
#: zstd's default level: the ratio of level 6 gzip at several times its speed.
ZSTD_LEVEL = 3
#: Bytes buffered before a write to (or read from) the underlying file.
BLOCK_SIZE = 1 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


class _Openable(Protocol):
    def open(self, mode: str = ..., *args: Any, **kwargs: Any) -> Any: ...


def stage_name(name: str, *, compress: bool = True) -> str:
    """``raw.ndjson`` → ``raw.ndjson.zst`` (unchanged without compression or when it has the suffix)."""
    return name if not compress or name.endswith(ZSTD_SUFFIX) else name + ZSTD_SUFFIX


class _RawAdapter(io.RawIOBase):
    """A raw stream over any file object, so a C buffer sits in front of it: one call to the
    wrapped file per block, not per line."""

    def __init__(self, fileobj: IO[bytes], *, writing: bool) -> None:
        super().__init__()
        self._f = fileobj
        self._writing = writing

    def readable(self) -> bool:
        return not self._writing

    def writable(self) -> bool:
        return self._writing

    def readinto(self, buffer: Any) -> int:
        data = self._f.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def write(self, data: Any) -> int:
        self._f.write(bytes(data))
        return len(data)

    def close(self) -> None:  # the caller closes the wrapped file
        if not self.closed:
            super().close()


@contextmanager
def open_writer(path: _Openable, *, compress: bool | None = None, level: int = ZSTD_LEVEL) -> Iterator[IO[bytes]]:
    """A binary, block-buffered writer of a stage file (replaced if it exists).

    :param path: the file (``ObjectStoragePath`` or ``pathlib.Path``).
    :param compress: zstd or plain; default from the name (zstd when it ends ``.zst``), so a file
        is what its name says.
    :param level: zstd level.
    :return: a context manager giving a binary file; everything is flushed and closed on exit.
    """
    if compress is None:
        compress = str(path).endswith(ZSTD_SUFFIX)
    with path.open("wb") as raw:
        sink = _RawAdapter(raw, writing=True)
        if compress:
            # write_return_read: BufferedWriter must be told the bytes it handed over were taken.
            encoder = zstandard.ZstdCompressor(level=level).stream_writer(
                sink, write_return_read=True, closefd=False)
            with encoder, io.BufferedWriter(encoder, BLOCK_SIZE) as out:  # type: ignore[arg-type]
                yield out  # type: ignore[misc]
        else:
            with io.BufferedWriter(sink, BLOCK_SIZE) as out:
                yield out  # type: ignore[misc]


@contextmanager
def open_text_writer(path: _Openable, *, compress: bool | None = None) -> Iterator[IO[str]]:
    """:func:`open_writer` for text (UTF-8, strict: text no UTF-8 writer can hold still raises)."""
    with open_writer(path, compress=compress) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="\n", write_through=False)
        try:
            yield text
        finally:
            text.flush()
            text.detach()


def compression_of(head: bytes) -> str | None:
    """``"zstd"``, ``"gzip"`` or ``None`` (plain) from a file's first bytes."""
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    return None


@contextmanager
def open_lines(path: _Openable) -> Iterator[IO[bytes]]:
    """A binary, block-buffered reader of a stage file, zstd, gzip or plain (found from its first
    bytes); iterate it for lines (bytes, newline included).

    :param path: the file (``ObjectStoragePath`` or ``pathlib.Path``).
    """
    with path.open("rb") as raw:
        source = io.BufferedReader(_RawAdapter(raw, writing=False), BLOCK_SIZE)
        kind = compression_of(source.peek(4)[:4])
        if kind == "zstd":
            decoder = zstandard.ZstdDecompressor().stream_reader(source, read_size=BLOCK_SIZE, closefd=False)
            with decoder, io.BufferedReader(decoder, BLOCK_SIZE) as lines:  # type: ignore[arg-type]
                yield lines  # type: ignore[misc]
        elif kind == "gzip":
            with gzip.GzipFile(fileobj=source, mode="rb") as unzipped, io.BufferedReader(unzipped, BLOCK_SIZE) as lines:  # type: ignore[arg-type]
                yield lines  # type: ignore[misc]
        else:
            yield source  # type: ignore[misc]


@contextmanager
def open_text(path: _Openable) -> Iterator[IO[str]]:
    """:func:`open_lines` decoded as UTF-8 text (for people and tests reading a stage file)."""
    with open_lines(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        try:
            yield text
        finally:
            text.detach()


def read_text(path: _Openable) -> str:
    """A whole stage file as text (small files: rejects, dead letters, tests)."""
    with open_text(path) as text:
        return text.read()
