"""A compact decoder-only transformer (GPT), written from scratch to be read.

    config = GPTConfig.named("tiny", vocab_size=16384)
    model = GPT(config)
    logits = model(input_ids, position_ids=position_ids, document_ids=document_ids)  # (B, T, vocab)

The shape of nanoGPT's `model.py` (pre-norm blocks, tied input and output
embeddings, GELU MLP, scaled init of the residual projections), with two
things a packed batch from `fastload.PackedDataset` asks for:

- positions come from `position_ids` (they restart at 0 for every document
  piece of a packed row) rather than from `arange(T)`: learned embeddings
  indexed by them, or rotary embeddings (RoPE) computed from them;
- `document_mask=True` keeps attention inside a document: a (B, 1, T, T)
  boolean mask `causal & same_document` built from `document_ids`, handed to
  `scaled_dot_product_attention`. Without it, attention is plain causal
  (`is_causal=True`, which lets SDPA pick its flash kernel on a GPU).

What is deliberately not here: dropout schedules, KV caching and generation
(this model exists to train on fastload's batches and be measured), and
fused or custom kernels (SDPA picks the fastest one it has).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastload.errors import ConfigError

__all__ = ["GPTConfig", "GPT", "MODEL_CONFIGS"]

POSITIONS = ("learned", "rotary")


@dataclass(frozen=True)
class GPTConfig:
    """The size and shape of a `GPT`. `vocab_size=None` means "take the dataset's" (the trainer fills it in)."""

    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128  # the longest sequence (seq_len) the model accepts
    vocab_size: int | None = None  # fastload's shipped vocabulary has 16,384 ids
    position: str = "learned"  # "learned" (GPT-2) or "rotary" (RoPE, as in LLaMA)
    document_mask: bool = True  # attend only within a document of a packed row
    dropout: float = 0.0  # nanoGPT: 0 for pretraining, 0.1+ for fine-tuning
    bias: bool = False  # nanoGPT: no biases is a little better and faster
    rope_base: float = 10_000.0  # RoFormer's theta

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"GPTConfig.{name} must be a positive integer, found {value!r}")
        if self.vocab_size is not None and (type(self.vocab_size) is not int or self.vocab_size < 2):
            raise ConfigError(f"GPTConfig.vocab_size must be an integer >= 2 (or None for the dataset's), found {self.vocab_size!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"GPTConfig.n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.position not in POSITIONS:
            raise ConfigError(f"GPTConfig.position must be one of {POSITIONS}, found {self.position!r}")
        if self.position == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ConfigError(f"rotary positions need an even head size; n_embd / n_head = {self.n_embd // self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"GPTConfig.dropout must be in [0, 1), found {self.dropout!r}")

    @staticmethod
    def named(name: str, **overrides) -> "GPTConfig":
        """One of `MODEL_CONFIGS` by name, with fields replaced by `overrides`."""
        if name not in MODEL_CONFIGS:
            raise ConfigError(f"unknown model config {name!r}; valid names: {', '.join(MODEL_CONFIGS)}")
        return replace(MODEL_CONFIGS[name], **overrides)

    def to_json(self) -> dict:
        return asdict(self)


MODEL_CONFIGS: dict[str, GPTConfig] = {
    # Trains on 2 CPU cores in minutes on the demo corpus (~2.5 M parameters, most in the 16k embedding).
    "tiny": GPTConfig(n_layer=2, n_head=4, n_embd=128, block_size=128),
    # A step up for a single small GPU (~11 M parameters without the embedding).
    "mini": GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256),
    # GPT-2 small (124 M with GPT-2's vocabulary) and medium (350 M): the sizes of the GPT-2 paper.
    "gpt2-small": GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024, block_size=1024),
}


def rotary_tables(position_ids: torch.Tensor, head_size: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every (position, frequency) pair, shaped to broadcast over heads: (B, 1, T, hs/2) each."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, device=position_ids.device, dtype=torch.float32) / head_size)  # (hs/2,)
    angles = position_ids.to(torch.float32)[:, None, :, None] * inv_freq  # (B, 1, T, hs/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[..., :hs/2], x[..., hs/2:]) of x (B, nh, T, hs) by its position's angles."""
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hs)
    return rotated.to(x.dtype)


def document_attention_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """True where query i may attend key j: j <= i and both in the same document. (B, 1, T, T)."""
    T = document_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()  # (T, T)
    same_document = document_ids[:, :, None] == document_ids[:, None, :]  # (B, T, T)
    return (same_document & causal)[:, None]  # (B, 1, T, T)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, rotary: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, T, C = x.shape  # batch, sequence length, n_embd
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        dropout = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, mask, rotary):
        x = x + self.attn(self.ln_1(x), mask, rotary)  # (B, T, C)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


class GPT(nn.Module):
    """Token ids (B, T) to next-token logits (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.vocab_size is None:
            raise ConfigError("GPTConfig.vocab_size is None; set it (the trainer takes it from the dataset's tokenizer)")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied (Press & Wolf 2017): one matrix, counted once
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: residual projections scaled by depth
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, *, embeddings: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        if not embeddings:
            total -= self.wte.weight.numel() + (self.wpe.weight.numel() if self.wpe is not None else 0)
        return total

    def forward(self, input_ids: torch.Tensor, *, position_ids: torch.Tensor | None = None, document_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        if T > self.config.block_size:
            raise ConfigError(f"a sequence of {T} tokens is longer than the model's block_size {self.config.block_size}")
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)  # (B, T)
        x = self.wte(input_ids)  # (B, T, C)
        rotary = None
        if self.wpe is not None:
            x = x + self.wpe(position_ids)  # (B, T, C)
        else:
            rotary = rotary_tables(position_ids, self.config.n_embd // self.config.n_head, self.config.rope_base)
        mask = document_attention_mask(document_ids) if self.config.document_mask and document_ids is not None else None
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, mask, rotary)  # (B, T, C)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab_size)
