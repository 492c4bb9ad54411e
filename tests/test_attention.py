"""cu_seqlens turns packed batches' document ids into variable-length attention offsets."""

import numpy as np
import pytest
import torch

import fastload
from tests.packing.conftest import distinct_documents, write_documents


def test_cu_seqlens_marks_every_piece_start_and_every_row_start():
    ids = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 2]], dtype=torch.int32)
    cu = fastload.cu_seqlens(ids)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 2, 4, 5, 7, 8]


def test_a_piece_that_fills_a_row_still_ends_at_the_row_boundary():
    cu = fastload.cu_seqlens(np.zeros((3, 5), np.int32))  # numpy in, tensor out
    assert isinstance(cu, torch.Tensor) and cu.tolist() == [0, 5, 10, 15]


def test_cu_seqlens_of_a_packed_batch_cover_its_documents(tmp_path):
    write_documents(tmp_path / "ds", distinct_documents(np.random.default_rng(0), 200, 40))
    packed = fastload.PackedDataset(tmp_path / "ds", seq_len=64, eos_id=0)
    batch = next(iter(fastload.DataLoader(packed, batch_size=4, shuffle=True)))
    ids = batch["document_ids"]
    cu = fastload.cu_seqlens(ids)
    lengths = cu.diff()
    assert int(lengths.sum()) == ids.numel() and bool((lengths > 0).all())
    flat = ids.reshape(-1)
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist()):  # one id per piece, and a new piece at each change
        assert bool((flat[start:end] == flat[start]).all())
        assert start % 64 == 0 or flat[start] != flat[start - 1]
    positions = batch["position_ids"].reshape(-1)
    assert bool((positions[cu[:-1].long()] == 0).all())  # position ids restart exactly where pieces start


def test_cu_seqlens_refuses_a_flat_array():
    with pytest.raises(ValueError, match=r"\(batch, seq_len\)"):
        fastload.cu_seqlens(torch.zeros(8, dtype=torch.int32))
