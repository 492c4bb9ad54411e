"""The packing plan's run splitter equals its twin: every stretch cut exactly at window starts."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.kernels.pack import split_runs_at_windows
from fastload.kernels.pack_reference import split_runs_at_windows_reference

PADDING_START = np.iinfo(np.int64).max  # what the plan puts after its last window: positions beyond are padding


@st.composite
def windows_and_stretches(draw):
    lengths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=8))
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    num_windows = len(lengths)
    starts = np.concatenate([starts, [PADDING_START]])  # window num_windows is padding, as in PackPlan
    stream_end = int(starts[num_windows]) + 10  # stretches may run past the last window into padding
    stretches = draw(st.lists(st.tuples(st.integers(0, stream_end), st.integers(1, 15)), min_size=0, max_size=6))
    begin = np.array([b for b, _ in stretches], np.int64)
    length = np.array([n for _, n in stretches], np.int64)
    out = np.cumsum(np.concatenate([[0], length[:-1]])).astype(np.int64) if len(stretches) else np.zeros(0, np.int64)
    return begin, length, out, starts, num_windows


@settings(max_examples=300, deadline=None)
@given(windows_and_stretches())
def test_split_runs_at_windows_equals_its_reference(case):
    begin, length, out, starts, num_windows = case
    got = split_runs_at_windows(begin, length, out, starts, num_windows)
    expected = split_runs_at_windows_reference(begin, length, out, starts, num_windows)
    for g, e in zip(got, expected):
        assert g.tolist() == e.tolist()


def test_a_stretch_across_two_windows_and_into_padding_becomes_three_runs():
    starts = np.array([0, 4, 10, PADDING_START], np.int64)
    windows, run_begin, run_end, run_out = split_runs_at_windows(np.array([2], np.int64), np.array([10], np.int64), np.array([100], np.int64), starts, 2)
    assert windows.tolist() == [0, 1, -1]
    assert run_begin.tolist() == [2, 4, 10] and run_end.tolist() == [4, 10, 12]
    assert run_out.tolist() == [100, 102, 108]
