"""Damaged and hand-edited datasets: each must raise a FastloadError that names the problem."""

import json
import re
import os
import shutil
import zlib

import numpy as np
import pytest

from fastload import FastloadError, FormatError
from fastload.format import Dataset, read_index, verify_dataset


def _read_everything(path):
    ds = Dataset(path)
    for block_id in range(ds.num_blocks):
        ds.block(block_id)
    return ds


def _edit_index(path, edit):
    index_path = path / "index.json"
    obj = json.loads(index_path.read_text())
    edit(obj)
    index_path.write_text(json.dumps(obj))


def test_truncated_shard_raises_format_error_naming_the_shard(small_dataset):
    shard = small_dataset / "shard-00001.arrow"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"shard 'shard-00001.arrow' is .* bytes but index.json records .*truncated"):
        Dataset(small_dataset)
    assert any("shard-00001.arrow" in p and "bytes" in p for p in verify_dataset(small_dataset))


def test_flipped_byte_in_a_block_is_caught_by_its_checksum_on_read(small_dataset):
    index = read_index(small_dataset)
    info = index.shards[0]
    target = int(info.block_offsets[2] + info.block_bytes[2] // 2)
    shard = small_dataset / info.file
    data = bytearray(shard.read_bytes())
    data[target] ^= 0x40
    shard.write_bytes(bytes(data))
    ds = Dataset(small_dataset)
    ds.block(0)  # untouched blocks still read
    with pytest.raises(FormatError, match=r"block 2 of shard 'shard-00000.arrow' .* fails its checksum"):
        ds.block(2)
    problems = verify_dataset(small_dataset)
    assert problems == [f"shard 'shard-00000.arrow' block 2: checksum mismatch (bytes {int(info.block_offsets[2]):,}-{int(info.block_offsets[2] + info.block_bytes[2]):,})"]


@pytest.mark.parametrize("seed", range(8))
def test_random_flipped_bytes_never_crash_and_are_always_reported(small_dataset, seed):
    rng = np.random.default_rng(seed)
    shard = small_dataset / "shard-00000.arrow"
    data = bytearray(shard.read_bytes())
    for position in rng.integers(0, len(data), size=3):
        data[position] ^= int(rng.integers(1, 256))
    shard.write_bytes(bytes(data))
    with pytest.raises(FastloadError):
        _read_everything(small_dataset)
    assert verify_dataset(small_dataset)


def test_a_block_with_valid_checksum_but_out_of_range_offsets_is_refused(tmp_path):
    # A crafted shard whose CRCs are right but whose string offsets point past the data:
    # Arrow's full validation on first read refuses it before any kernel can index out of bounds.
    import pyarrow as pa

    from fastload.format import Column, DatasetWriter, Schema

    schema = Schema((Column("text", "text", "utf8"),))
    with DatasetWriter(tmp_path / "ds", schema) as writer:
        writer.write(pa.record_batch([pa.array(["hello", " world"])], schema=schema.arrow_schema()))
    shard = tmp_path / "ds" / "shard-00000.arrow"
    data = shard.read_bytes()
    good_offsets = np.array([0, 5, 11], np.int32).tobytes()
    assert data.count(good_offsets) == 1
    data = data.replace(good_offsets, np.array([0, 5, 100_000], np.int32).tobytes())
    shard.write_bytes(data)

    def forge_checksums(o):
        blocks = o["shards"][0]["blocks"]
        blocks["crc32"][0] = zlib.crc32(data[blocks["offset"][0] : blocks["offset"][0] + blocks["num_bytes"][0]])
        o["shards"][0]["crc32"] = zlib.crc32(data)

    _edit_index(tmp_path / "ds", forge_checksums)
    assert verify_dataset(tmp_path / "ds")  # verify reports it too
    with pytest.raises(FormatError, match="block 0 of shard 'shard-00000.arrow' cannot be decoded"):
        Dataset(tmp_path / "ds")[1]


def test_deleted_shard_raises_format_error_naming_the_shard(small_dataset):
    last = read_index(small_dataset).shards[-1].file
    (small_dataset / last).unlink()
    with pytest.raises(FormatError, match=rf"shard '{last}' .* is missing"):
        Dataset(small_dataset)
    assert verify_dataset(small_dataset) == [f"shard '{last}': missing"]


def test_missing_index_says_the_folder_is_not_a_complete_dataset(small_dataset):
    (small_dataset / "index.json").unlink()
    with pytest.raises(FormatError, match="no index.json.*conversion did not finish"):
        Dataset(small_dataset)


def test_index_that_is_not_json_raises_format_error(small_dataset):
    (small_dataset / "index.json").write_text('{"format": "fastload", "version": 1, "shards": [')
    with pytest.raises(FormatError, match="not valid JSON"):
        Dataset(small_dataset)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda o: o.update(num_rows=o["num_rows"] + 1), "records num_rows=601 but its shards add up to 600"),
        (lambda o: o["shards"][0].update(num_rows=1), "records 1 rows but its blocks add up to"),
        (lambda o: o["shards"][0]["blocks"]["num_rows"].__setitem__(0, 49), "rows but its blocks add up to"),
        (lambda o: o["shards"][0].update(file="../escape.arrow"), "not a plain file name inside the dataset folder"),
        (lambda o: o["shards"][0].update(file="/etc/passwd"), "not a plain file name"),
        (lambda o: o["shards"][0].update(file=".."), "not a plain file name"),
        (lambda o: o["shards"][0].update(num_bytes=2**60), "must be an integer in"),
        (lambda o: o["shards"][0].update(num_rows=-5), "must be an integer in"),
        (lambda o: o["shards"][0]["blocks"]["offset"].__setitem__(1, 10**15), "must be a list of integers|tile the file"),
        (lambda o: o["shards"][0]["blocks"]["num_bytes"].pop(), "block lists of different lengths"),
        (lambda o: o["shards"][1].update(file=o["shards"][0]["file"]), "more than once"),
        (lambda o: o.update(version=99), "format version 99.*Upgrade fastload"),
        (lambda o: o.update(format="something-else"), "not written by fastload"),
        (lambda o: o.update(compression="brotli"), "compression is 'brotli'"),
        (lambda o: o["schema"][0].update(kind="pickle"), "unknown kind 'pickle'"),
        (lambda o: o["schema"][2].update(shape=[-1, 2]), "shape"),
        (lambda o: o["schema"][2].update(shape=[2**20, 2**20]), "elements per row"),
        (lambda o: o.update(shards=[]), "lists no shards"),
        (lambda o: o["shards"][0].pop("blocks"), "lacks its 'blocks' table"),
    ],
)
def test_edited_index_raises_format_error_naming_what_is_wrong(small_dataset, edit, message):
    _edit_index(small_dataset, edit)
    with pytest.raises(FormatError, match=message):
        Dataset(small_dataset)


def test_index_disagreeing_with_the_shard_block_count_raises(small_dataset):
    def merge_first_two_blocks(o):
        blocks = o["shards"][0]["blocks"]
        blocks["num_rows"][0:2] = [blocks["num_rows"][0] + blocks["num_rows"][1]]
        blocks["num_bytes"][0:2] = [blocks["num_bytes"][0] + blocks["num_bytes"][1]]
        blocks["offset"][0:2] = [0]
        blocks["crc32"][0:2] = [0]
        for counts in blocks.get("values", {}).values():  # consistent with the other lists: the shard must be what disagrees
            counts[0:2] = [counts[0] + counts[1]]

    _edit_index(small_dataset, merge_first_two_blocks)
    with pytest.raises(FormatError, match="shard 'shard-00000.arrow' holds .* blocks but index.json records"):
        Dataset(small_dataset).block(0)


def test_schema_disagreeing_with_the_shards_raises(small_dataset):
    _edit_index(small_dataset, lambda o: o["schema"][3].update(dtype="int32"))
    with pytest.raises(FormatError, match="shard 'shard-00000.arrow' has columns"):
        Dataset(small_dataset).block(0)


def test_a_shard_replaced_by_garbage_of_the_same_size_raises(small_dataset):
    shard = small_dataset / "shard-00000.arrow"
    shard.write_bytes(os.urandom(shard.stat().st_size))
    with pytest.raises(FormatError, match="shard 'shard-00000.arrow' cannot be opened as an Arrow IPC file"):
        Dataset(small_dataset, check_blocks=True).block(0)


def test_huge_index_file_is_refused_before_parsing(small_dataset, monkeypatch):
    import fastload.format.index as index_module

    (small_dataset / "index.json").write_text(" " * 1000 + "{}")
    monkeypatch.setattr(index_module, "_MAX_INDEX_BYTES", 100)
    with pytest.raises(FormatError, match="far beyond any real index"):
        Dataset(small_dataset)


def test_opening_a_plain_folder_says_how_to_create_a_dataset(tmp_path):
    with pytest.raises(FormatError, match="fastload convert"):
        Dataset(tmp_path)
    with pytest.raises(FormatError, match="does not exist"):
        Dataset(tmp_path / "nope")


def test_copying_a_dataset_elsewhere_keeps_it_valid(small_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    assert len(_read_everything(copy)) == 600


def test_every_single_flipped_byte_of_a_shard_is_refused_or_harmless(tmp_path):
    """Flip each byte of a small shard in turn: reading raises a FormatError, or returns the
    right data (a flip in padding); `verify` reports or passes, and never crashes."""
    import pyarrow as pa

    from fastload.format import Column, DatasetWriter, Schema

    schema = Schema((Column("text", "text", "utf8"), Column("n", "scalar", "int64")))
    rows = pa.record_batch([pa.array([f"row {i}" for i in range(20)]), pa.array(range(20), pa.int64())], schema=schema.arrow_schema())
    with DatasetWriter(tmp_path / "ds", schema) as writer:
        writer.write(rows)
    shard = tmp_path / "ds" / "shard-00000.arrow"
    original = shard.read_bytes()
    expected = [{"text": f"row {i}", "n": i} for i in range(20)]
    for position in range(0, len(original), 3):
        damaged = bytearray(original)
        damaged[position] ^= 0x5A
        shard.write_bytes(bytes(damaged))
        try:
            assert list(Dataset(tmp_path / "ds")) == expected, f"byte {position}: wrong data read silently"
        except FormatError:
            pass
        assert isinstance(verify_dataset(tmp_path / "ds"), list)
    shard.write_bytes(original)


def _footer_block_entry(data: bytes, message_offset: int) -> int:
    """Where the footer's 24-byte Block struct (offset, metadata length, body length) for the message at `message_offset` starts."""
    footer_length = int.from_bytes(data[-10:-6], "little")
    footer_start = len(data) - 10 - footer_length
    position = data.index(message_offset.to_bytes(8, "little", signed=True), footer_start)
    return position


def test_an_edited_footer_cannot_make_a_block_return_another_blocks_rows(small_dataset):
    index = read_index(small_dataset)
    info = index.shards[0]
    shard = small_dataset / info.file
    expected = [Dataset(small_dataset).block(b).batch for b in (1, 2)]
    data = bytearray(shard.read_bytes())
    first = _footer_block_entry(bytes(data), int(info.block_offsets[1]))
    second = _footer_block_entry(bytes(data), int(info.block_offsets[2]))
    data[first : first + 24], data[second : second + 24] = data[second : second + 24], data[first : first + 24]
    shard.write_bytes(bytes(data))
    import pyarrow.ipc as ipc

    swapped = ipc.open_file(str(shard))
    assert swapped.get_batch(1).equals(expected[1])  # the footer now points block 1 at block 2's bytes
    ds = Dataset(small_dataset)
    assert ds.block(1).batch.equals(expected[0]) and ds.block(2).batch.equals(expected[1])  # decoded from the verified ranges
    assert ds[50]["label"] == 50
    assert any("shard-00000.arrow" in p for p in verify_dataset(small_dataset))  # the file's checksum covers the footer


def test_a_shard_truncated_while_mapped_raises_format_error_instead_of_sigbus(small_dataset):
    ds = Dataset(small_dataset)
    ds.block(0)  # shard 0 is now open and mapped
    shard = small_dataset / "shard-00000.arrow"
    size = shard.stat().st_size
    os.truncate(shard, size // 3)
    with pytest.raises(FormatError, match=r"shard 'shard-00000.arrow' is now .* bytes .* index.json records .*changed while it was open"):
        ds.block(ds.num_blocks - 1 if ds.block_shard[-1] == 0 else int(np.flatnonzero(ds.block_shard == 0)[-1]))


def test_a_shard_that_links_outside_the_dataset_folder_is_refused(small_dataset, tmp_path):
    outside = tmp_path / "elsewhere.arrow"
    shard = small_dataset / "shard-00001.arrow"
    shutil.move(shard, outside)
    os.symlink(outside, shard)
    with pytest.raises(FormatError, match=r"shard 'shard-00001.arrow' .* is a symbolic link to .*elsewhere.arrow', outside the dataset folder"):
        Dataset(small_dataset)
    assert any("outside the dataset folder" in p for p in verify_dataset(small_dataset))


def test_a_link_to_a_shard_inside_the_folder_still_reads(small_dataset):
    shard = small_dataset / "shard-00001.arrow"
    shutil.move(shard, small_dataset / "kept.arrow")
    os.symlink("kept.arrow", shard)
    assert len(_read_everything(small_dataset)) == 600 and verify_dataset(small_dataset) == []


def test_a_block_edited_to_zero_rows_is_refused(small_dataset):
    def empty_a_block(obj):
        shard = obj["shards"][0]
        moved = shard["blocks"]["num_rows"][1]
        shard["blocks"]["num_rows"][1] = 0
        shard["blocks"]["num_rows"][2] += moved  # totals still add up
    _edit_index(small_dataset, empty_a_block)
    with pytest.raises(FormatError, match="block 1 records 0 rows; every block holds at least one"):
        Dataset(small_dataset)


@pytest.mark.parametrize(
    "text, expected",
    [("[" * 100_000 + "]" * 100_000, "nests deeper than any index"), ('{"version": 1' + "0" * 5000 + "}", "not valid JSON")],
    ids=["deeply-nested", "thousands-of-digits"],
)
def test_an_absurd_index_json_is_a_format_error(small_dataset, text, expected):
    (small_dataset / "index.json").write_text(text)
    with pytest.raises(FormatError, match=expected):
        Dataset(small_dataset)
    assert expected in verify_dataset(small_dataset)[0]


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
@pytest.mark.parametrize("target", ["index.json", "shard-00001.arrow"])
def test_a_fifo_directory_or_device_is_named_for_what_it_is(small_dataset, kind, target):
    path = small_dataset / target
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        os.symlink("/dev/zero", path)
    named = {"fifo": "a FIFO (named pipe)", "directory": "a directory", "device": "a character device"}[kind]
    with pytest.raises(FormatError, match=re.escape(f"is {named}, not a regular file")):
        Dataset(small_dataset)  # returns at once: nothing is opened
    assert named in " ".join(verify_dataset(small_dataset))
