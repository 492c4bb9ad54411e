"""A dataset behind plain HTTP (any server that answers Range requests): urllib in the main process, obstore in workers."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
import torch

import fastload
from fastload.errors import StoreError
from tests.packing.conftest import distinct_documents, write_documents

pytest.importorskip("obstore", reason="remote datasets need the remote extra: pip install 'fastload[remote]'")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """The standard library's file server, plus `Range: bytes=a-b` (answered 206 with exactly those bytes)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_head(self):
        wanted = self.headers.get("Range")
        if not wanted or not wanted.startswith("bytes="):
            return super().send_head()
        path = self.translate_path(self.path)
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(404)
            return None
        size = f.seek(0, 2)
        first, _, last = wanted[6:].partition("-")
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        body = f.read(end - start + 1)
        f.close()
        self.wfile.write(body)
        return None


@pytest.fixture
def http_dataset(tmp_path):
    """(local folder, its URL on a Range-answering HTTP server on 127.0.0.1)."""
    folder = tmp_path / "site" / "corpus"
    write_documents(folder, distinct_documents(np.random.default_rng(2), 200, 50), block_rows=9)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(tmp_path / "site")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/corpus"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_packed_batches_over_http_equal_local_ones(http_dataset, tmp_path, num_workers):
    folder, url = http_dataset

    def batches(dataset):
        packed = fastload.PackedDataset(dataset, seq_len=23, eos_id=0)
        return [b["input_ids"].clone() for b in fastload.DataLoader(packed, batch_size=4, shuffle=True, num_workers=num_workers, timeout=120 if num_workers else 0)]

    remote = fastload.Dataset(url, cache_dir=tmp_path / "cache")
    expected, found = batches(fastload.Dataset(folder)), batches(remote)
    assert len(expected) > 3 and all(torch.equal(a, b) for a, b in zip(found, expected)) and len(found) == len(expected)


def test_a_missing_file_over_http_is_named(http_dataset, tmp_path):
    _, url = http_dataset
    with pytest.raises(fastload.FormatError, match="index.json does not exist"):
        fastload.Dataset(url + "-nothing", cache_dir=tmp_path / "cache")
    dataset = fastload.Dataset(url, cache_dir=tmp_path / "cache")
    with pytest.raises(StoreError, match="plain HTTP cannot list"):
        dataset.remote.store.list()
