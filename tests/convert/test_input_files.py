import gzip
import io
import random

import pytest

from fastload.convert.input_files import InputFile, line_pieces, open_decompressed
from fastload.store import LocalStore
from fastload.store.object_file import ObjectFile

VIA = ["file", "object"]  # a local file, or the same bytes read as an object by ranged GETs (`ObjectFile`)


def _input(path, via: str, compression=None) -> InputFile:
    if via == "file":
        return InputFile(path, "jsonl", compression, path.name, path.stat().st_size, path.stat().st_mtime_ns)
    store = LocalStore(path.parent)
    info = store.describe(path.name)
    return InputFile(str(path), "jsonl", compression, path.name, info.size, info.version, store)


def _pieces(path, via="file", **kwargs) -> list[bytes]:
    return [bytes(piece) for piece in line_pieces(_input(path, via), **kwargs)]


@pytest.fixture
def small_windows(monkeypatch):
    """Objects read in windows of 777 bytes: pieces and lines straddle them."""
    original = ObjectFile.__init__
    monkeypatch.setattr(ObjectFile, "__init__", lambda self, *a, **k: original(self, *a, **{**k, "window_bytes": 777}))


@pytest.mark.parametrize("via", VIA)
def test_pieces_are_whole_lines_that_add_up_to_the_file_with_lines_longer_than_a_piece_and_than_the_search_window(tmp_path, via, small_windows):
    rng = random.Random(7)
    # lengths around the piece size and past the 64 KiB window the last newline is looked for in
    lengths = [rng.choice([0, 1, 5, 100, 999, 1000, 1001, 70_000, 150_000]) for _ in range(60)]
    data = b"".join(bytes([97 + i % 26]) * n + b"\n" for i, n in enumerate(lengths))
    path = tmp_path / "lines.jsonl"
    path.write_bytes(data)
    pieces = _pieces(path, via, piece_bytes=1000)
    assert b"".join(pieces) == data
    assert all(piece.endswith(b"\n") for piece in pieces)
    if via == "object":  # the same pieces as from the file: chunks, and so shards, do not depend on where the bytes lie
        assert pieces == _pieces(path, "file", piece_bytes=1000)


@pytest.mark.parametrize("via", VIA)
def test_a_byte_range_and_a_last_line_without_newline_are_read_whole(tmp_path, via, small_windows):
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"one\ntwo\nthree\nfour")
    assert b"".join(_pieces(path, via, piece_bytes=3, start=4, end=14)) == b"two\nthree\n"
    assert b"".join(_pieces(path, via, piece_bytes=5, start=14)) == b"four\n"


def test_a_compressed_object_is_decompressed_as_it_is_read(tmp_path, small_windows):
    data = b"".join(b'{"text": "line %d"}\n' % i for i in range(5000))
    path = tmp_path / "lines.jsonl.gz"
    path.write_bytes(gzip.compress(data))
    with open_decompressed(_input(path, "object", ".gz")) as f:
        assert f.read() == data


def test_an_object_file_seeks_and_reads_like_a_file(tmp_path, small_windows):
    data = bytes(random.Random(3).randbytes(10_000))
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    for sequential in (True, False):
        # (buffered, as `open_raw` gives it: a raw read may stop at a window's end, as raw reads may)
        with io.BufferedReader(ObjectFile(LocalStore(tmp_path), "blob.bin", len(data), sequential=sequential)) as f:
            assert f.read(10) == data[:10]
            f.seek(5000)
            assert f.read(2000) == data[5000:7000]  # (over several windows)
            f.seek(-100, 2)
            assert f.read() == data[-100:] and f.tell() == len(data) and f.read(5) == b""
            f.seek(1)
            assert f.read() == data[1:]
