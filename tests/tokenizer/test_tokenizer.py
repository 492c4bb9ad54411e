"""The public `Tokenizer`: Arrow batches, buffers, threads, bad input,
decoding, metadata, fingerprints, pickling and loading by spec."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.errors import ConfigError, TokenizerError
from fastload.tokenizer import DEFAULT_TOKENIZER_PATH, Tokenizer, load_tokenizer
from tests.tokenizer.corpora import ALL_TEXTS, CORPORA

TEXTS = [t for t in ALL_TEXTS if "<|" not in t]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.default()


def split(ids, offsets):
    return [ids[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]


def test_encode_arrow_matches_encode_for_every_document(tok):
    ids, offsets = tok.encode_arrow(pa.array(TEXTS))
    assert ids.dtype == np.uint32 and offsets.dtype == np.int64
    assert offsets[0] == 0 and offsets[-1] == ids.shape[0]
    assert split(ids, offsets) == [tok.encode(t) for t in TEXTS]


def test_null_strings_become_empty_documents(tok):
    ids, offsets = tok.encode_arrow(pa.array(["a b", None, "", "c"]))
    assert split(ids, offsets) == [tok.encode("a b"), [], [], tok.encode("c")]


def test_sliced_chunked_large_and_view_arrays_encode_the_same(tok):
    expected = [tok.encode(t) for t in TEXTS[3:20]]
    base = pa.array(TEXTS)
    variants = [
        base.slice(3, 17),
        pa.array(TEXTS[3:20], type=pa.large_string()),
        pa.chunked_array([pa.array(TEXTS[3:10]), pa.array(TEXTS[10:20], type=pa.string())]),
        pa.array(TEXTS[3:20], type=pa.string_view()),
    ]
    for arr in variants:
        assert split(*tok.encode_arrow(arr)) == expected, arr.type


def test_encode_arrow_of_chosen_documents_encodes_only_those_in_that_order(tok):
    base = pa.array(TEXTS + [None])
    rows = np.array([5, 0, len(TEXTS), 5, 2])
    ids, offsets = tok.encode_arrow(base.slice(0), documents=rows)
    assert split(ids, offsets) == [tok.encode(TEXTS[5]), tok.encode(TEXTS[0]), [], tok.encode(TEXTS[5]), tok.encode(TEXTS[2])]
    assert split(*tok.encode_arrow(base.slice(2, 5), documents=[1])) == [tok.encode(TEXTS[3])]
    assert tok.encode_arrow(base, documents=np.zeros(0, np.int64))[1].tolist() == [0]
    with pytest.raises(ConfigError, match="documents name rows from 0 to 99"):
        tok.encode_arrow(pa.array(TEXTS[:3]), documents=[0, 99])
    with pytest.raises(ConfigError, match="1-d array of row numbers"):
        tok.encode_arrow(base, documents=[0.5])


def test_empty_array_gives_no_ids(tok):
    ids, offsets = tok.encode_arrow(pa.array([], type=pa.string()))
    assert ids.shape == (0,) and offsets.tolist() == [0]


def test_out_buffer_receives_the_ids(tok):
    arr = pa.array(TEXTS)
    out = np.zeros(Tokenizer.max_ids(arr), dtype=np.uint32)
    ids, offsets = tok.encode_arrow(arr, out=out)
    assert np.shares_memory(ids, out)
    assert split(ids, offsets) == [tok.encode(t) for t in TEXTS]


def test_out_buffer_too_small_raises_config_error_with_the_size_needed(tok):
    arr = pa.array(["hello world"] * 4)
    with pytest.raises(ConfigError, match="may need up to 44"):
        tok.encode_arrow(arr, out=np.zeros(10, dtype=np.uint32))


def test_two_threads_give_the_same_ids_as_one(tok):
    arr = pa.array(TEXTS * 20)
    one = tok.encode_arrow(arr)
    two = tok.encode_arrow(arr, num_threads=2)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


def test_invalid_utf8_is_encoded_as_python_replace_decoding_sees_it(tok):
    raw = [b"ok \xff\xfe bad", b"trunc \xe4\xb8", b"\xed\xa0\x80 surrogate", b"overlong \xc0\xaf", b"fine"]
    arr = pa.Array.from_buffers(
        pa.string(), len(raw),
        [None, pa.py_buffer(np.cumsum([0] + [len(r) for r in raw]).astype(np.int32).tobytes()),
         pa.py_buffer(b"".join(raw))],
    )
    expected = [tok.encode(r.decode("utf-8", "replace")) for r in raw]
    assert split(*tok.encode_arrow(arr)) == expected


def test_corrupt_offsets_raise_tokenizer_error(tok):
    arr = pa.Array.from_buffers(
        pa.string(), 2, [None, pa.py_buffer(np.array([0, 50, 3], dtype=np.int32).tobytes()), pa.py_buffer(b"abc")]
    )
    with pytest.raises(TokenizerError, match="corrupt"):
        tok.encode_arrow(arr)


def test_non_string_input_raises_config_error(tok):
    with pytest.raises(ConfigError, match="string"):
        tok.encode_arrow(pa.array([1, 2, 3]))
    with pytest.raises(ConfigError):
        tok.encode_arrow(["not", "arrow"])


def test_lone_surrogates_encode_as_replacement_character_like_tiktoken(tok):
    assert tok.encode("a\ud800b") == tok.encode("a\ufffdb")
    assert tok.encode_batch(["a\ud800b"]) == [tok.encode("a\ufffdb")]


def test_decode_round_trips_every_corpus(tok):
    for text in ALL_TEXTS:
        assert tok.decode(tok.encode(text)) == text
        assert tok.decode(tok.encode(text, allowed_special="all")) == text


def test_decode_rejects_ids_outside_the_vocabulary(tok):
    with pytest.raises(TokenizerError, match="out of range"):
        tok.decode([tok.vocab_size])


def test_special_token_text_is_ordinary_text_unless_allowed(tok):
    plain = tok.encode("a<|endoftext|>b")
    assert tok.eos_id not in plain
    assert tok.encode("a<|endoftext|>b", allowed_special="all") == tok.encode("a") + [tok.eos_id] + tok.encode("b")
    assert tok.encode("a<|endoftext|>b", allowed_special={"<|endoftext|>"}).count(tok.eos_id) == 1
    with pytest.raises(ConfigError, match="not added tokens"):
        tok.encode("x", allowed_special={"<|nope|>"})


def test_default_vocabulary_metadata(tok):
    assert tok.vocab_size == 16384
    assert tok.eos_id == tok.token_to_id("<|endoftext|>") == 0
    assert tok.bos_id is None
    assert tok.token_to_id(" the") == tok.encode(" the")[0]
    assert tok.token_to_id("a") == tok.encode("a")[0]
    assert tok.token_to_id("no such token, surely") is None


def test_byte_tokenizer_gives_one_id_per_utf8_byte():
    tok = Tokenizer.bytes()
    assert tok.vocab_size == 257 and tok.eos_id == 256
    text = "héllo 中 😀"
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.encode("a<|endoftext|>", allowed_special="all") == [97, 256]
    assert tok.decode(tok.encode(text)) == text


def test_fingerprint_is_stable_and_tells_vocabularies_apart(tok, hf_files):
    assert tok.fingerprint == Tokenizer.default().fingerprint
    assert len(tok.fingerprint) == 64 and int(tok.fingerprint, 16) >= 0
    prints = {Tokenizer.from_file(hf_files[s]).fingerprint for s in ("gpt2", "cl100k", "cl100k-possessive", "o200k")}
    assert len(prints) == 4
    assert Tokenizer.bytes().fingerprint != Tokenizer.bytes({"<|endoftext|>": 300}).fingerprint


def test_pickled_tokenizer_is_small_and_encodes_identically(tok):
    tok.encode("build the tables first")
    payload = pickle.dumps(tok)
    assert len(payload) < 1_000_000  # vocabulary arrays only, not the hash tables
    clone = pickle.loads(payload)
    assert clone.fingerprint == tok.fingerprint
    assert clone.encode_batch(TEXTS) == tok.encode_batch(TEXTS)


def test_load_tokenizer_accepts_every_spec(hf_files, rank_files):
    assert load_tokenizer("default").fingerprint == Tokenizer.default().fingerprint
    assert load_tokenizer("bytes").vocab_size == 257
    assert load_tokenizer(str(hf_files["o200k"])).pattern == "o200k"
    path, _ = rank_files["cl100k"]
    assert load_tokenizer(path).pattern == "cl100k-tiktoken"
    with pytest.raises(ConfigError, match="neither 'default', 'bytes'"):
        load_tokenizer("/no/such/tokenizer.json")


def _edited(tmp_path, edit):
    spec = json.loads(DEFAULT_TOKENIZER_PATH.read_text())
    edit(spec)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    return path


def test_added_tokens_with_lstrip_load_but_cannot_be_allowed_special(tmp_path):
    tok = Tokenizer.from_file(_edited(tmp_path, lambda s: s["added_tokens"][0].update(lstrip=True)))
    assert tok.encode("a <|endoftext|>") == Tokenizer.default().encode("a <|endoftext|>")
    with pytest.raises(TokenizerError, match="lstrip"):
        tok.encode("a <|endoftext|>", allowed_special="all")


def test_rank_file_with_a_bad_line_names_the_line(tmp_path):
    path = tmp_path / "bad.tiktoken"
    path.write_text("IQ== 0\nnot base64 at all\n")
    with pytest.raises(TokenizerError, match="line 2"):
        Tokenizer.from_tiktoken(path)


def test_importing_the_tokenizer_imports_no_numba_and_no_torch():
    code = ("import sys, fastload.tokenizer\n"
            "heavy = [m for m in ('numba', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_vocabulary_matches_hf_tokenizers(tok):
    from tokenizers import Tokenizer as HF

    hf = HF.from_file(str(DEFAULT_TOKENIZER_PATH))
    texts = [t for texts in CORPORA.values() for t in texts if "<|" not in t]
    assert tok.encode_batch(texts) == [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]


def test_kernels_run_as_plain_python_with_jit_disabled_and_agree(hf_files):
    import os

    texts = CORPORA["prose"] + CORPORA["whitespace"] + CORPORA["cjk"][:2] + CORPORA["contractions"]
    code = ("import json, sys\nfrom fastload.tokenizer import Tokenizer\n"
            "tok = Tokenizer.from_file(sys.argv[1])\n"
            "print(json.dumps(tok.encode_batch(json.loads(sys.stdin.read()))))\n")
    env = dict(os.environ, FASTLOAD_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code, str(hf_files["cl100k"])],
                          input=json.dumps(texts), capture_output=True, text=True, env=env, check=True)
    assert json.loads(proc.stdout) == Tokenizer.from_file(hf_files["cl100k"]).encode_batch(texts)


@settings(max_examples=60, deadline=None)
@given(docs=st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=12),
       cut=st.integers(min_value=0, max_value=12), threads=st.sampled_from([1, 2]))
def test_encode_arrow_of_any_slice_with_nulls_matches_encoding_each_document(docs, cut, threads):
    tok = Tokenizer.default()
    texts = [None if d is None else d.encode("utf-16", "surrogatepass").decode("utf-16", "replace") for d in docs]
    arr = pa.array(texts, type=pa.string()).slice(min(cut, len(texts)))
    ids, offsets = tok.encode_arrow(arr, num_threads=threads)
    expected = [[] if t is None else tok.encode(t) for t in texts[min(cut, len(texts)):]]
    assert split(ids, offsets) == expected


def test_every_entry_point_shares_one_compiled_encoder(tok):
    # Each distinct argument type would cost a full compile of the encoder.
    from fastload.tokenizer.kernels import bpe

    tok.encode("x")
    tok.encode_batch(["x", None])
    tok.encode_arrow(pa.array(["x", None]))
    tok.encode_arrow(pa.chunked_array([pa.array(["x"], type=pa.large_string())]), num_threads=2)
    tok.encode("x<|endoftext|>", allowed_special="all")
    Tokenizer.bytes().encode("x")
    assert len(bpe.encode_documents.signatures) == 1


def test_returned_ids_do_not_hold_the_worst_case_buffer(tok):
    ids, _ = tok.encode_arrow(pa.array(["the the the the the the"] * 100))
    assert ids.base is None or ids.base.nbytes <= 2 * ids.nbytes
