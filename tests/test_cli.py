"""The `fastload` command: exit codes, messages and output a user sees."""

import json
import subprocess
import sys

import pytest

import fastload
from fastload.cli import main


def _jsonl(path, n=50):
    path.write_text("".join(json.dumps({"text": f"doc {i}", "i": i}) + "\n" for i in range(n)))
    return path


def test_convert_inspect_verify_round_trip(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl")
    assert main(["convert", str(src), "-o", str(tmp_path / "out"), "--block-rows", "10", "--compression", "lz4"]) == 0
    summary = capsys.readouterr().out
    assert "rows         50" in summary and "MB/s in" in summary
    assert main(["inspect", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr().out
    assert "text" in shown and "doc 0" in shown and "blocks 5" in shown
    assert main(["inspect", str(tmp_path / "out"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_rows"] == 50 and info["sample_rows"][0] == {"text": "doc 0", "i": 0}
    assert main(["verify", str(tmp_path / "out")]) == 0
    assert "OK" in capsys.readouterr().out


def test_verify_exits_nonzero_naming_each_bad_block(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", 500)
    main(["convert", str(src), "-o", str(tmp_path / "out"), "--block-rows", "100", "--quiet"])
    shard = tmp_path / "out" / "shard-00000-0000.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    assert main(["verify", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "BAD  shard 'shard-00000-0000.arrow' block" in out and "checksum mismatch" in out


def test_user_errors_are_one_line_on_stderr_with_exit_status_1(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastload convert: error: input") and "does not exist" in err and "Traceback" not in err


def test_sizes_accept_units():
    from fastload.cli import _size

    assert _size("1MiB") == 1 << 20 and _size("64KB") == 64_000 and _size("4096") == 4096
    with pytest.raises(Exception):
        _size("lots")


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "fastload.cli", "--help"], capture_output=True, text=True, check=True)
    assert "convert" in result.stdout and "verify" in result.stdout


def test_inspect_json_is_valid_json_even_with_nan_and_numpy_values(tmp_path, capsys):
    import numpy as np

    import fastload

    rows = [{"x": float("nan"), "v": np.array([1.0, float("inf")], np.float32), "n": 3}]
    fastload.convert(rows, tmp_path / "out", quiet=True)
    assert main(["inspect", str(tmp_path / "out"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sample_rows"][0] == {"x": None, "v": [1.0, None], "n": 3}


def test_inspect_says_what_it_checked_and_points_to_verify(tmp_path, capsys):
    fastload.convert([{"text": f"row {i}"} for i in range(10)], tmp_path / "out", quiet=True)
    assert main(["inspect", str(tmp_path / "out"), "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "checked      index.json, shard sizes and the 2 rows shown" in out
    assert f"'fastload verify {tmp_path / 'out'}' checks every block's checksum" in out
