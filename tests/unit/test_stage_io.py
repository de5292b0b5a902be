"""Stage files (issue 17): zstd-compressed NDJSON written and read in blocks, transparent to
readers, and files written plain by earlier releases (or gzip) still read."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
import zstandard

from threatq_provider.operators._common import sibling_ndjson_path
from threatq_provider.stage_io import (
    BLOCK_SIZE,
    compression_of,
    open_lines,
    open_text,
    open_text_writer,
    open_writer,
    read_text,
    stage_name,
)

LINES = [json.dumps({"id": i, "value": f"198.51.100.{i % 250}", "note": "bücher 😀"}, ensure_ascii=False).encode() + b"\n"
         for i in range(20_000)]


class CountingPath:
    """A path whose file counts the calls made to it (as Airflow's tracking wrapper would see them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes = 0
        self.reads = 0

    def __str__(self) -> str:
        return str(self.path)

    def open(self, mode: str = "rb"):
        fh = self.path.open(mode)
        counter = self

        class Counted(io.RawIOBase):
            def write(self, data):
                counter.writes += 1
                return fh.write(data)

            def read(self, n=-1):
                counter.reads += 1
                return fh.read(n)

            def __exit__(self, *exc):
                fh.close()
                return False

        return Counted()


def test_a_zst_name_is_written_zstd_and_reads_back_line_for_line(tmp_path):
    path = tmp_path / "raw.ndjson.zst"
    with open_writer(path) as out:
        for line in LINES:
            out.write(line)

    data = path.read_bytes()
    assert compression_of(data[:4]) == "zstd" and len(data) < sum(map(len, LINES)) / 5
    assert zstandard.ZstdDecompressor().decompressobj().decompress(data) == b"".join(LINES)  # plain zstd: zstdcat reads it
    with open_lines(path) as lines:
        assert list(lines) == LINES


def test_a_plain_name_is_written_plain():
    assert stage_name("raw.ndjson") == "raw.ndjson.zst" and stage_name("raw.ndjson.zst") == "raw.ndjson.zst"


def test_plain_name_writes_plain_text(tmp_path):
    path = tmp_path / "ecs.ndjson"
    with open_writer(path) as out:
        out.writelines(LINES[:3])
    assert path.read_bytes() == b"".join(LINES[:3])


@pytest.mark.parametrize("encode", [lambda b: b, gzip.compress, lambda b: zstandard.ZstdCompressor().compress(b)],
                         ids=["plain (earlier releases)", "gzip", "zstd"])
def test_readers_find_the_compression_from_the_bytes_not_the_name(tmp_path, encode):
    path = tmp_path / "raw.ndjson"  # the name says nothing
    path.write_bytes(encode(b"".join(LINES[:100])))
    with open_lines(path) as lines:
        assert list(lines) == LINES[:100]
    assert read_text(path) == b"".join(LINES[:100]).decode()


@pytest.mark.parametrize("name", ["empty.ndjson", "empty.ndjson.zst"])
def test_an_empty_stage_file_reads_as_no_lines(tmp_path, name):
    path = tmp_path / name
    with open_writer(path):
        pass
    with open_lines(path) as lines:
        assert list(lines) == []


def test_lines_reach_the_storage_file_in_blocks_not_one_call_per_line(tmp_path):
    for name in ("raw.ndjson", "raw.ndjson.zst"):
        path = CountingPath(tmp_path / name)
        with open_writer(path) as out:
            for line in LINES:
                out.write(line)
        with open_lines(path) as lines:
            assert sum(1 for _ in lines) == len(LINES)
        size = sum(map(len, LINES))
        assert path.writes <= size // BLOCK_SIZE + 8, (name, path.writes)
        assert path.reads <= size // BLOCK_SIZE + 8, (name, path.reads)


def test_text_writer_is_utf8_and_strict(tmp_path):
    path = tmp_path / "rejects.ndjson.zst"
    with open_text_writer(path) as out:
        out.write('{"note":"é"}\n')
    with open_text(path) as text:
        assert text.read() == '{"note":"é"}\n'
    with pytest.raises(UnicodeEncodeError), open_text_writer(tmp_path / "bad.ndjson.zst") as out:
        out.write("\ud800\n")


def test_an_object_storage_path_works_like_a_path(tmp_path):
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath(f"file://{tmp_path}/ecs.ndjson.zst")
    with open_writer(path) as out:
        out.writelines(LINES[:10])
    assert compression_of((tmp_path / "ecs.ndjson.zst").read_bytes()[:4]) == "zstd"
    with open_lines(ObjectStoragePath(f"file://{tmp_path}/ecs.ndjson.zst")) as lines:
        assert list(lines) == LINES[:10]


@pytest.mark.parametrize(("path", "sibling"), [
    ("s3://b/run/ecs.ndjson", "s3://b/run/ecs.rejects.ndjson"),
    ("s3://b/run/ecs.ndjson.zst", "s3://b/run/ecs.rejects.ndjson.zst"),
    ("file:///x/out", "file:///x/out.rejects.ndjson"),
])
def test_a_sibling_is_compressed_like_its_stage_file(path, sibling):
    assert sibling_ndjson_path(path, "rejects") == sibling
