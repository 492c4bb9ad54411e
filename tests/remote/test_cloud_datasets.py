"""gs:// and az:// datasets: converted to and read from GCS and Azure Blob Storage through obstore's own
client for each, equal to the local dataset bit for bit.

Each test runs once per cloud (`cloud_endpoint` in `conftest.py`): a fresh bucket or container on the local
folder server, which answers GCS's XML API (S3's dialect) and Azure Blob's REST API (`folder_azure.py`).
The client is the one a real gs:// or az:// URL gets; `storage_options` point the Python API at the
server, and the environment (`endpoint.env`: GOOGLE_BASE_URL/GOOGLE_BEARER_TOKEN, or
AZURE_STORAGE_USE_EMULATOR with AZURITE_BLOB_STORAGE_URL) the CLI, as a user would for a local emulator.
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
from tests.remote.folder_objects import MULTIPART_FOLDER

pytest.importorskip("obstore", reason="gs:// and az:// datasets need the remote extra: pip install 'fastload[remote]'")

SEQ_LEN, BATCH = 32, 4


@pytest.fixture
def corpus(tmp_path, cloud_endpoint) -> tuple[str, str]:
    """The demo corpus as byte tokens (quick to tokenize) in 25-document blocks and 1 MiB shards:
    (its URL in the cloud, a local copy converted alike)."""
    local, url = tmp_path / "local", cloud_endpoint.url("corpus")
    options = {"tokenizer": "bytes", "block_rows": 25, "shard_bytes": 1 << 20, "quiet": True}
    fastload.convert(demo_corpus_path(), local, **options)
    fastload.convert(demo_corpus_path(), url, storage_options=cloud_endpoint.storage_options, **options)
    return url, str(local)


def _batches(dataset, *, num_workers: int) -> list:
    packed = fastload.PackedDataset(dataset, seq_len=SEQ_LEN)
    loader = fastload.DataLoader(packed, batch_sampler=packed.batch_sampler(BATCH), num_workers=num_workers)
    return [batch["input_ids"].clone() for batch in loader]


def test_a_corpus_converted_to_the_cloud_has_the_local_shards_and_reads_back_by_range_bit_for_bit(corpus, cloud_endpoint, tmp_path):
    url, local_path = corpus
    local = fastload.Dataset(local_path)
    remote = fastload.Dataset(url, storage_options=cloud_endpoint.storage_options, cache_dir=tmp_path / "cache")
    assert len(local.index.shards) > 1 and remote.num_blocks == local.num_blocks > 10
    for shard in local.index.shards:  # uploaded as written: the same bytes as the local conversion's files
        assert cloud_endpoint.object_file(f"corpus/{shard.file}").read_bytes() == (local.path / shard.file).read_bytes()
    before = len(cloud_endpoint.server.reads())
    for block_id in range(local.num_blocks):
        assert remote.read_block(block_id).equals(local.read_block(block_id))
    shard_bytes = {f"corpus/{shard.file}": (local.path / shard.file).stat().st_size for shard in local.index.shards}
    shard_reads = [read for read in cloud_endpoint.server.reads()[before:] if read.key in shard_bytes]
    assert shard_reads and all(read.length < shard_bytes[read.key] for read in shard_reads)  # ranged reads, never whole shards
    expected = _batches(local, num_workers=0)
    assert len(expected) > 5
    for num_workers in (0, 2):  # 2: spawned workers (this process started obstore), each with its own client
        got = _batches(fastload.Dataset(url, storage_options=cloud_endpoint.storage_options, cache_dir=tmp_path / f"cache-{num_workers}"),
                       num_workers=num_workers)
        assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_the_cli_converts_overwrites_verifies_and_inspects_a_cloud_dataset_found_through_the_environment(tmp_path, cloud_endpoint, monkeypatch, capsys):
    for name, value in cloud_endpoint.env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"doc {i} " + "word " * (i % 17), "i": i}) + "\n" for i in range(2000)))
    url, local = cloud_endpoint.url("ds"), tmp_path / "local"
    assert main(["convert", str(source), "-o", url, "--block-bytes", "8KiB", "--shard-bytes", "16KiB", "--quiet"]) == 0
    for out in (url, str(local)):  # overwriting the first: its index and the shards the new one does not name are deleted
        assert main(["convert", str(source), "-o", out, "--block-bytes", "8KiB", "--shard-bytes", "32KiB", "--quiet", "--overwrite"]) == 0
    assert {p.name: p.read_bytes() for p in cloud_endpoint.object_file("ds").iterdir()} == {p.name: p.read_bytes() for p in local.iterdir()}
    assert [row["i"] for row in fastload.Dataset(url)] == [row["i"] for row in fastload.Dataset(local)] == list(range(2000))
    assert main(["verify", url]) == 0
    assert capsys.readouterr().out.startswith(f"OK   {url}:")
    assert main(["inspect", url, "--json", "--rows", "2"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_rows"] == 2000 and [row["i"] for row in info["sample_rows"]] == [0, 1]

    shard, block = fastload.Dataset(url).index.shards[1], 2
    damaged = cloud_endpoint.object_file(f"ds/{shard.file}")
    data = bytearray(damaged.read_bytes())
    data[int(shard.block_offsets[block]) + int(shard.block_bytes[block]) // 2] ^= 0x10
    damaged.write_bytes(bytes(data))
    assert main(["verify", url]) == 1
    assert f"BAD  shard {shard.file!r} block {block}: checksum mismatch" in capsys.readouterr().out


def test_every_store_operation_including_an_upload_in_parts(tmp_path, cloud_endpoint):
    store = ObjectStore(cloud_endpoint.url("objects"), cloud_endpoint.storage_options)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * ((12 << 20) // 256))  # 12 MiB: obstore uploads a file over 5 MiB in parts (Azure: blocks)
    store.put("big.bin", big)
    store.put("small.json", b'{"a": 1}')
    assert store.list() == ["big.bin", "small.json"]
    assert store.size("big.bin") == 12 << 20 and cloud_endpoint.object_file("objects/big.bin").read_bytes() == big.read_bytes()
    assert not any((cloud_endpoint.server.root / MULTIPART_FOLDER).glob("*"))  # the parts are gone once joined
    assert bytes(store.get_range("big.bin", (12 << 20) - 300, 300)) == big.read_bytes()[-300:]
    assert bytes(store.get("small.json")) == b'{"a": 1}'
    store.delete("small.json")
    store.delete("small.json")  # deleting what is gone is not an error
    assert store.list() == ["big.bin"]
    with pytest.raises(NotFound, match=cloud_endpoint.hint):
        store.size("small.json")


@pytest.mark.parametrize("missing", ["dataset", "bucket"])
def test_a_missing_cloud_dataset_raises_at_once_naming_the_url(cloud_endpoint, missing):
    url = cloud_endpoint.url("nothing-here", bucket=None if missing == "dataset" else "no-such-bucket")
    with pytest.raises(FormatError, match=f"{url}/index.json does not exist"):
        fastload.Dataset(url, storage_options=cloud_endpoint.storage_options)


def test_the_azure_account_variables_reach_the_container_as_storage_options_do(azure_endpoint, monkeypatch):
    """AZURE_STORAGE_ENDPOINT / _ACCOUNT_NAME / _ACCOUNT_KEY, the third way the README names (a plain-http endpoint allowed)."""
    options = azure_endpoint.storage_options
    for name, key in {"AZURE_STORAGE_ENDPOINT": "endpoint", "AZURE_STORAGE_ACCOUNT_NAME": "account_name", "AZURE_STORAGE_ACCOUNT_KEY": "access_key"}.items():
        monkeypatch.setenv(name, options[key])
    store = ObjectStore(azure_endpoint.url("env"))
    store.put("a.bin", b"through the environment")
    assert store.list() == ["a.bin"] and bytes(store.get_range("a.bin", 8, 3)) == b"the"
    assert azure_endpoint.object_file("env/a.bin").read_bytes() == b"through the environment"
