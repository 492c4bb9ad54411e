"""`fastload verify URL` and `fastload inspect URL`: a dataset in object storage checked and shown as a local one is."""

from __future__ import annotations

import json

import pytest

import fastload
from fastload.cli import main

pytest.importorskip("obstore", reason="remote datasets need the remote extra: pip install 'fastload[remote]'")


@pytest.fixture
def remote_dataset(tmp_path, moto_endpoint) -> str:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"doc {i} " + "word " * (i % 17), "i": i}) + "\n" for i in range(2000)))
    url = f"s3://{moto_endpoint.bucket}/ds"
    fastload.convert(source, url, block_bytes=8 << 10, shard_bytes=32 << 10, quiet=True)
    return url


def _flip_byte(moto_endpoint, key: str, position: int) -> None:
    client = moto_endpoint.client()
    data = bytearray(client.get_object(Bucket=moto_endpoint.bucket, Key=key)["Body"].read())
    data[position] ^= 0x10
    client.put_object(Bucket=moto_endpoint.bucket, Key=key, Body=bytes(data))


def test_verify_passes_an_intact_remote_dataset(remote_dataset, capsys):
    assert fastload.verify_dataset(remote_dataset) == []
    assert main(["verify", remote_dataset]) == 0
    assert capsys.readouterr().out.startswith(f"OK   {remote_dataset}:")


def test_verify_names_the_block_of_a_remote_shard_with_a_flipped_byte(remote_dataset, moto_endpoint, capsys):
    info = fastload.Dataset(remote_dataset).index.shards[1]
    block = 2
    _flip_byte(moto_endpoint, f"ds/{info.file}", int(info.block_offsets[block]) + int(info.block_bytes[block]) // 2)
    problems = fastload.verify_dataset(remote_dataset)
    assert problems == [f"shard {info.file!r} block {block}: checksum mismatch (bytes {int(info.block_offsets[block]):,}-"
                        f"{int(info.block_offsets[block] + info.block_bytes[block]):,})"]
    assert main(["verify", remote_dataset]) == 1
    out = capsys.readouterr().out
    assert f"BAD  shard {info.file!r} block {block}: checksum mismatch" in out and f"1 problem(s) in {remote_dataset}" in out


def test_verify_reports_a_missing_remote_shard_and_a_missing_index(remote_dataset, moto_endpoint):
    client = moto_endpoint.client()
    client.delete_object(Bucket=moto_endpoint.bucket, Key="ds/shard-00000-0003.arrow")
    assert fastload.verify_dataset(remote_dataset) == [f"shard 'shard-00000-0003.arrow': missing ({remote_dataset}/shard-00000-0003.arrow does not exist)"]
    client.delete_object(Bucket=moto_endpoint.bucket, Key="ds/index.json")
    [problem] = fastload.verify_dataset(remote_dataset)
    assert f"{remote_dataset}/index.json does not exist" in problem


def test_inspect_shows_a_remote_dataset(remote_dataset, capsys):
    assert main(["inspect", remote_dataset]) == 0
    shown = capsys.readouterr().out
    assert f"dataset      {remote_dataset}\n" in shown and "rows         2,000" in shown and "doc 0" in shown
    assert f"'fastload verify {remote_dataset}'" in shown
    assert main(["inspect", remote_dataset, "--json", "--rows", "2"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_rows"] == 2000 and [row["i"] for row in info["sample_rows"]] == [0, 1]
