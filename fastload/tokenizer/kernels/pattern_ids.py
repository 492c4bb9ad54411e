"""Numbers that name the pre-tokenization matchers in `pretokenize.py`.

Kept apart from the kernels so that `fastload.tokenizer` can name a matcher
without importing Numba (importing fastload compiles and loads nothing).
"""

PATTERN_GPT2 = 0
PATTERN_CL100K = 1
PATTERN_O200K = 2
PATTERN_NONE = 3  # every byte is its own piece (the byte tokenizer)
