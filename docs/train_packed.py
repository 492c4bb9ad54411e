"""A complete training loop fed by fastload: packed documents, exact resume, non-blocking copies.

    fastload demo --out demo/corpus                 # once: the shipped corpus, tokenized
    python docs/train_packed.py demo/corpus --steps 200
    python docs/train_packed.py demo/corpus --steps 300   # continues from the checkpoint at step 200

The checkpoint goes to runs/train_packed/checkpoint.pt (or --checkpoint PATH),
named when the run starts; a run finding it there resumes from it. Progress
lines are flushed as they are printed, so a piped run (`| tee log.txt`)
shows them as they come.

The model is deliberately tiny (an embedding, one causal-attention block and a
head) so the loop runs on a CPU in seconds; put your own model in its place.
What matters is the data side: `PackedDataset` packs documents with an EOS
between them into rows of seq_len + 1 tokens, `fastload.DataLoader` computes
every batch in its workers straight into shared memory (pinned on CUDA), and
`loader.state_dict()` in the checkpoint lets a restart continue with exactly
the next batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import fastload


class TinyCausalLM(nn.Module):
    def __init__(self, vocab_size: int, seq_len: int, width: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(seq_len, width)
        self.attention = nn.MultiheadAttention(width, num_heads=4, batch_first=True)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, input_ids, position_ids, document_ids):
        x = self.embed(input_ids) + self.position(position_ids)  # (B, T, width)
        T = input_ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        same_document = document_ids[:, :, None] == document_ids[:, None, :]  # attend within a document only
        mask = ~(causal & same_document)  # True = blocked
        mask = mask.repeat_interleave(self.attention.num_heads, dim=0)
        attended, _ = self.attention(x, x, x, attn_mask=mask, need_weights=False)
        return self.head(x + attended)  # (B, T, vocab)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkpoint", default="runs/train_packed/checkpoint.pt", help="saved every 50 steps and at the end; resumed from when it exists")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    packed = fastload.PackedDataset(args.dataset, seq_len=args.seq_len)  # EOS id recorded at conversion
    loader = fastload.DataLoader(
        packed, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        pin_memory=device == "cuda", persistent_workers=args.workers > 0,
    )
    vocab_size = fastload.Tokenizer.default().vocab_size
    model = TinyCausalLM(vocab_size, args.seq_len).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = 0
    checkpoint = Path(args.checkpoint)
    if checkpoint.exists():  # resume: model, optimizer and the exact place in the data
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        loader.load_state_dict(saved["loader"])
        step = saved["step"]
        print(f"resumed at step {step} from {checkpoint} (delete it, or pass another --checkpoint, to start afresh)", flush=True)
    else:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        print(f"training {args.steps} steps on {device}; checkpoint: {checkpoint}", flush=True)

    while step < args.steps:
        for batch in loader:
            batch = {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
            logits = model(batch["input_ids"], batch["position_ids"], batch["document_ids"])
            loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())  # labels of padding are -100: ignored
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 50 == 0 or step == args.steps:
                print(f"step {step:5d}  loss {loss.item():.3f}", flush=True)  # flushed: a piped stdout holds lines back otherwise
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "loader": loader.state_dict(), "step": step}, checkpoint)
            if step == args.steps:
                break


if __name__ == "__main__":
    main()
