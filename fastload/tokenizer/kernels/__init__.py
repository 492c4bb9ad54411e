"""The tokenizer's Numba kernels and their twins: everything tokenization computes, in one folder.

    pretokenize.py   split text into pieces as GPT-2's, cl100k's and o200k's regexes would
    bpe.py           merge each piece's bytes into token ids (and `encode_documents`, the whole loop)
    hashtable.py     the open-addressing tables bpe.py looks tokens and pairs up in
    utf8.py          strict UTF-8 validation of Arrow string batches
    unicode_table.py the shipped table of Unicode classes the pre-tokenizer reads
    pattern_ids.py   the ids of the pre-tokenization patterns, shared with `fastload/tokenizer/patterns.py`

Each kernel module `<name>.py` that computes something a user sees has its
slow, readable twin beside it in `<name>_reference.py`, which the tests
compare it with (`fastload/kernels/__init__.py` states the convention; the
architecture test checks it). The Python side of the tokenizer (vocabulary
files, patterns, tables, batching) is one level up, in `fastload/tokenizer/`.
"""
