import random

from fastload.convert.input_files import line_pieces


def _pieces(path, **kwargs) -> list[bytes]:
    return [bytes(piece) for piece in line_pieces(path, None, **kwargs)]


def test_pieces_are_whole_lines_that_add_up_to_the_file_with_lines_longer_than_a_piece_and_than_the_search_window(tmp_path):
    rng = random.Random(7)
    # lengths around the piece size and past the 64 KiB window the last newline is looked for in
    lengths = [rng.choice([0, 1, 5, 100, 999, 1000, 1001, 70_000, 150_000]) for _ in range(60)]
    data = b"".join(bytes([97 + i % 26]) * n + b"\n" for i, n in enumerate(lengths))
    path = tmp_path / "lines.jsonl"
    path.write_bytes(data)
    pieces = _pieces(path, piece_bytes=1000)
    assert b"".join(pieces) == data
    assert all(piece.endswith(b"\n") for piece in pieces)


def test_a_byte_range_and_a_last_line_without_newline_are_read_whole(tmp_path):
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"one\ntwo\nthree\nfour")
    assert b"".join(_pieces(path, piece_bytes=3, start=4, end=14)) == b"two\nthree\n"
    assert b"".join(_pieces(path, piece_bytes=5, start=14)) == b"four\n"
