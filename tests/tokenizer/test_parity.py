"""Token-for-token parity: `Tokenizer.from_file` against Hugging Face
tokenizers and `Tokenizer.from_tiktoken` against tiktoken, on the corpora
where implementations are known to disagree and on random Unicode."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastload.tokenizer import Tokenizer
from tests.tokenizer.conftest import TIKTOKEN_STYLES, openai_rank_file
from tests.tokenizer.corpora import ALL_TEXTS, CORPORA

HF_STYLES = ["gpt2", "gpt2-ignore-merges", "cl100k", "cl100k-possessive", "o200k"]
RANDOM_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def hf_ids(hf, texts):
    return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]


def without_added_tokens(texts, tokenizer):
    """HF always cuts added tokens out of text; compare ordinary text only there."""
    return [t for t in texts if not any(s in t for s in tokenizer.special_tokens)]


@pytest.fixture(scope="module")
def hf_pairs(hf_files):
    from tokenizers import Tokenizer as HF

    return {style: (Tokenizer.from_file(hf_files[style]), HF.from_file(str(hf_files[style]))) for style in HF_STYLES}


@pytest.fixture(scope="module")
def tiktoken_pairs(rank_files):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    pairs = {}
    for style, (name, regex) in TIKTOKEN_STYLES.items():
        path, specials = rank_files[style]
        ours = Tokenizer.from_tiktoken(path, pattern=name, special_tokens=specials)
        ref = tiktoken.Encoding(style, pat_str=regex, mergeable_ranks=load_tiktoken_bpe(str(path)),
                                special_tokens=specials)
        pairs[style] = (ours, ref)
    return pairs


@pytest.mark.parametrize("style", HF_STYLES)
@pytest.mark.parametrize("corpus", CORPORA)
def test_ids_match_hf_tokenizers_on_each_corpus(hf_pairs, style, corpus):
    ours, hf = hf_pairs[style]
    texts = without_added_tokens(CORPORA[corpus], ours)
    assert ours.encode_batch(texts) == hf_ids(hf, texts)
    assert [ours.encode(t) for t in texts] == hf_ids(hf, texts)


@pytest.mark.parametrize("style", HF_STYLES)
def test_special_tokens_inside_text_match_hf_when_allowed(hf_pairs, style):
    ours, hf = hf_pairs[style]
    assert ours.encode_batch(CORPORA["special_inside"], allowed_special="all") == hf_ids(hf, CORPORA["special_inside"])


@pytest.mark.parametrize("style", HF_STYLES)
@SETTINGS
@given(text=RANDOM_TEXT)
def test_random_unicode_matches_hf_tokenizers(hf_pairs, style, text):
    ours, hf = hf_pairs[style]
    if not without_added_tokens([text], ours):
        return
    assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("style", TIKTOKEN_STYLES)
@pytest.mark.parametrize("corpus", CORPORA)
def test_ids_match_tiktoken_encode_ordinary_on_each_corpus(tiktoken_pairs, style, corpus):
    ours, ref = tiktoken_pairs[style]
    texts = CORPORA[corpus]
    assert ours.encode_batch(texts) == ref.encode_ordinary_batch(texts, num_threads=1)


@pytest.mark.parametrize("style", TIKTOKEN_STYLES)
def test_allowed_special_matches_tiktoken_encode(tiktoken_pairs, style):
    ours, ref = tiktoken_pairs[style]
    for text in CORPORA["special_inside"]:
        assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
        assert ours.encode(text, allowed_special={"<|endoftext|>"}) == ref.encode(
            text, allowed_special={"<|endoftext|>"}, disallowed_special=())


@pytest.mark.parametrize("style", TIKTOKEN_STYLES)
@SETTINGS
@given(text=RANDOM_TEXT)
def test_random_unicode_matches_tiktoken(tiktoken_pairs, style, text):
    ours, ref = tiktoken_pairs[style]
    assert ours.encode(text) == ref.encode_ordinary(text)


@pytest.mark.parametrize("name,pattern", [("cl100k_base", "cl100k"), ("o200k_base", "o200k")])
def test_real_openai_vocabularies_match_tiktoken(tmp_path_factory, name, pattern):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from fastload.tokenizer import patterns

    path = openai_rank_file(name, tmp_path_factory)
    ours = Tokenizer.from_tiktoken(path, pattern=pattern)
    assert ours.eos_id == {"cl100k": 100257, "o200k": 199999}[pattern]  # OpenAI's own special ids
    regex = {"cl100k": patterns.CL100K_POSSESSIVE_PATTERN, "o200k": patterns.O200K_PATTERN}[pattern]
    ref = tiktoken.Encoding(name, pat_str=regex, mergeable_ranks=load_tiktoken_bpe(str(path)),
                            special_tokens=ours.special_tokens)
    texts = ALL_TEXTS + ["a" * 20_000, "中文" * 5_000, "Hello" * 2_000, " " * 3_000 + "x"]
    assert ours.encode_batch(texts) == ref.encode_ordinary_batch(texts, num_threads=1)
    assert ours.encode("<|endoftext|>x", allowed_special="all") == ref.encode("<|endoftext|>x", allowed_special="all")


@pytest.mark.parametrize("style", TIKTOKEN_STYLES)
def test_readable_reference_pipeline_matches_the_kernels_on_every_corpus(tiktoken_pairs, style):
    from fastload.tokenizer.kernels.bpe_reference import encode_reference, merge_by_ranks

    ours, _ = tiktoken_pairs[style]
    ranks = {ours.id_to_bytes(i): i for i in ours._vocab.lookup_ids.tolist()}
    pattern = ours._vocab.pattern
    for text in ALL_TEXTS:
        expected = encode_reference(text, pattern_id=pattern.pattern_id, max_digits=pattern.max_digits,
                                    ws_end_whole=pattern.ws_end_whole, merge=lambda piece: merge_by_ranks(piece, ranks))
        assert ours.encode(text) == expected, text
