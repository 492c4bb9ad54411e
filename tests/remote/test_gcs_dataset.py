"""gs:// datasets: converted to and read from GCS through obstore's GCS client, equal to the local dataset bit for bit.

The bucket lives on a local server that speaks GCS's XML API (`gcs_endpoint` in `conftest.py`, which says
why not `gcp-storage-emulator`); the client is the one a real gs:// URL gets. `storage_options` point the
Python API at it, GOOGLE_BASE_URL/GOOGLE_BEARER_TOKEN the CLI, as a user would for a local emulator.
"""

from __future__ import annotations

import json

import pytest
import torch

import fastload
from fastload.cli import main
from fastload.demo import demo_corpus_path
from fastload.errors import FormatError
from fastload.store import NotFound
from fastload.store.object_store import ObjectStore

pytest.importorskip("obstore", reason="gs:// datasets need the remote extra: pip install 'fastload[remote]'")

SEQ_LEN, BATCH = 32, 4


@pytest.fixture
def corpus(tmp_path, gcs_endpoint) -> tuple[str, str]:
    """The demo corpus as byte tokens (quick to tokenize) in 25-document blocks and 1 MiB shards:
    (its gs:// URL, a local copy converted alike)."""
    local, url = tmp_path / "local", f"gs://{gcs_endpoint.bucket}/corpus"
    options = {"tokenizer": "bytes", "block_rows": 25, "shard_bytes": 1 << 20, "quiet": True}
    fastload.convert(demo_corpus_path(), local, **options)
    fastload.convert(demo_corpus_path(), url, storage_options=gcs_endpoint.storage_options, **options)
    return url, str(local)


def _batches(dataset, *, num_workers: int) -> list:
    packed = fastload.PackedDataset(dataset, seq_len=SEQ_LEN)
    loader = fastload.DataLoader(packed, batch_sampler=packed.batch_sampler(BATCH), num_workers=num_workers)
    return [batch["input_ids"].clone() for batch in loader]


def test_a_corpus_converted_to_gs_has_the_local_shards_and_reads_back_bit_for_bit(corpus, gcs_endpoint, tmp_path):
    url, local_path = corpus
    local = fastload.Dataset(local_path)
    remote = fastload.Dataset(url, storage_options=gcs_endpoint.storage_options, cache_dir=tmp_path / "cache")
    assert len(local.index.shards) > 1 and remote.num_blocks == local.num_blocks > 10
    for shard in local.index.shards:  # uploaded as written: the same bytes as the local conversion's files
        assert gcs_endpoint.object_file(f"corpus/{shard.file}").read_bytes() == (local.path / shard.file).read_bytes()
    for block_id in range(local.num_blocks):
        assert remote.read_block(block_id).equals(local.read_block(block_id))
    expected = _batches(local, num_workers=0)
    assert len(expected) > 5
    for num_workers in (0, 2):  # 2: spawned workers (this process started obstore), each with its own gs:// client
        got = _batches(fastload.Dataset(url, storage_options=gcs_endpoint.storage_options, cache_dir=tmp_path / f"cache-{num_workers}"),
                       num_workers=num_workers)
        assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_the_cli_converts_verifies_and_inspects_a_gs_dataset_found_through_google_base_url(tmp_path, gcs_endpoint, monkeypatch, capsys):
    for name, value in gcs_endpoint.env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"doc {i} " + "word " * (i % 17), "i": i}) + "\n" for i in range(2000)))
    url = f"gs://{gcs_endpoint.bucket}/ds"
    assert main(["convert", str(source), "-o", url, "--block-bytes", "8KiB", "--shard-bytes", "32KiB", "--quiet"]) == 0
    assert main(["verify", url]) == 0
    assert capsys.readouterr().out.startswith(f"OK   {url}:")
    assert main(["inspect", url, "--json", "--rows", "2"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_rows"] == 2000 and [row["i"] for row in info["sample_rows"]] == [0, 1]

    shard, block = fastload.Dataset(url).index.shards[1], 2
    damaged = gcs_endpoint.object_file(f"ds/{shard.file}")
    data = bytearray(damaged.read_bytes())
    data[int(shard.block_offsets[block]) + int(shard.block_bytes[block]) // 2] ^= 0x10
    damaged.write_bytes(bytes(data))
    assert main(["verify", url]) == 1
    assert f"BAD  shard {shard.file!r} block {block}: checksum mismatch" in capsys.readouterr().out


def test_every_store_operation_on_gs_including_a_multipart_upload(tmp_path, gcs_endpoint):
    store = ObjectStore(f"gs://{gcs_endpoint.bucket}/objects", gcs_endpoint.storage_options)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * ((12 << 20) // 256))  # 12 MiB: obstore uploads a file over 5 MiB in parts
    store.put("big.bin", big)
    store.put("small.json", b'{"a": 1}')
    assert store.list() == ["big.bin", "small.json"]
    assert store.size("big.bin") == 12 << 20 and gcs_endpoint.object_file("objects/big.bin").read_bytes() == big.read_bytes()
    assert bytes(store.get_range("big.bin", (12 << 20) - 300, 300)) == big.read_bytes()[-300:]
    assert bytes(store.get("small.json")) == b'{"a": 1}'
    store.delete("small.json")
    store.delete("small.json")  # deleting what is gone is not an error
    with pytest.raises(NotFound, match="GOOGLE_BASE_URL"):
        store.size("small.json")


def test_a_missing_gs_dataset_raises_at_once_naming_the_url(gcs_endpoint):
    url = f"gs://{gcs_endpoint.bucket}/nothing-here"
    with pytest.raises(FormatError, match=f"{url}/index.json does not exist"):
        fastload.Dataset(url, storage_options=gcs_endpoint.storage_options)
