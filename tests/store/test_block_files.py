"""`BlockFiles`: the folder's complete block files, stat()ing only what is new since the last listing."""

from __future__ import annotations

import os

from fastload.store.block_files import BlockFiles


def _counting_stats(monkeypatch) -> list:
    calls = []
    stat = os.stat

    def counted(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    return calls


def test_a_listing_has_each_block_files_size_and_skips_other_files(tmp_path):
    for block_id, size in ((3, 30), (1, 10), (12, 120)):
        (tmp_path / f"{block_id}.block").write_bytes(b"x" * size)
    for other in ("locks", "room", "7.partial", "x.block", "lengths-tokens.npy"):
        (tmp_path / other).write_bytes(b"y")
    ids, sizes, written = BlockFiles(tmp_path).list()
    assert ids.tolist() == [1, 3, 12] and sizes.tolist() == [10, 30, 120]
    assert written.tolist() == [os.stat(tmp_path / f"{b}.block").st_mtime for b in (1, 3, 12)]


def test_a_second_listing_stats_only_the_files_added_or_replaced_since(tmp_path, monkeypatch):
    for block_id in range(5):
        (tmp_path / f"{block_id}.block").write_bytes(b"x" * 10)
    files = BlockFiles(tmp_path)
    files.list()
    (tmp_path / "5.block").write_bytes(b"x" * 50)  # downloaded by another process
    (tmp_path / "2.block").unlink()  # evicted, and downloaded again: a new file (a new inode) under the old name
    (tmp_path / "4.block").unlink()
    (tmp_path / "4.tmp").write_bytes(b"x" * 40)
    os.replace(tmp_path / "4.tmp", tmp_path / "4.block")
    (tmp_path / "0.block").unlink()  # evicted
    stats = _counting_stats(monkeypatch)
    ids, sizes, _ = files.list()
    assert ids.tolist() == [1, 3, 4, 5] and sizes.tolist() == [10, 10, 40, 50]
    assert sorted(stats) == ["4.block", "5.block"]
