"""Image normalisation benchmark: fastload's kernel against torch and numpy, one thread each.

    python bench/normalize.py [--batch 64] [--size 224] [--warmup 2] [--repeats 11] [--json PATH]

One batch of uint8 HWC images (batch, size, size, 3) becomes normalised CHW
(ImageNet mean and std, torchvision's 0..1 convention) in float32 and in
bfloat16. Contenders:

- fastload `normalize_images` into a preallocated `out` (what a worker does
  with its shared-memory slot), for the whole batch and one image per call;
- torch: `(x.permute(0, 3, 1, 2).float() / 255 - mean) / std`, then
  `.to(torch.bfloat16)`, with `torch.set_num_threads(1)` (a loader worker is
  one thread);
- numpy: `normalize_images_reference`, the obvious numpy expression.

All run in this process, one after another, each warmed up first; GB/s counts
the bytes read plus the bytes written (a plain HWC->CHW copy to float32 is
listed as the memory-bandwidth floor). Each row reports the median of the
repeats, min-max beside it, and the speed-up over torch measured in the run.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _harness import format_table, machine_info, measure, write_json
from fastload.kernels.normalize import normalize_images
from fastload.kernels.normalize_reference import normalize_images_reference

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, as torchvision documents it


def contenders(images: np.ndarray, dtype: str) -> dict:
    storage = {"float32": np.float32, "bfloat16": np.uint16}[dtype]
    out = np.empty((images.shape[0], 3, *images.shape[1:3]), storage)
    x = torch.from_numpy(images)
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]

    def torch_ops():
        y = (x.permute(0, 3, 1, 2).float() / 255 - mean) / std  # (N, C, H, W)
        return y if dtype == "float32" else y.to(torch.bfloat16)

    def one_by_one():
        for i in range(images.shape[0]):
            normalize_images(images[i], MEAN, STD, out=out[i], dtype=dtype)

    runs = {
        "torch ops (1 thread)": torch_ops,
        "fastload normalize_images": lambda: normalize_images(images, MEAN, STD, out=out, dtype=dtype),
        "fastload, one image per call": one_by_one,
        "numpy (reference)": lambda: normalize_images_reference(images, MEAN, STD, dtype=dtype),
    }
    if dtype == "float32":
        runs["copy HWC->CHW to float32 (floor)"] = lambda: np.copyto(out, images.transpose(0, 3, 1, 2))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    images = np.random.default_rng(0).integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    rows, results = [], []
    for dtype in ("float32", "bfloat16"):
        out_bytes = images.size * (4 if dtype == "float32" else 2)
        baseline_s = None
        for name, run in contenders(images, dtype).items():
            timing = measure(run, warmup=args.warmup, repeats=args.repeats)
            baseline_s = baseline_s or timing.median_s  # torch ops come first
            gb_s = (images.nbytes + out_bytes) / timing.median_s / 1e9
            rows.append(
                [dtype, name, f"{timing.median_s * 1e3:.2f}", f"{timing.min_s * 1e3:.2f}-{timing.max_s * 1e3:.2f}", f"{gb_s:.1f}", f"{baseline_s / timing.median_s:.1f}x"]
            )
            results.append({"dtype": dtype, "contender": name, "gb_per_s": gb_s, **timing.to_json()})

    shape = f"{args.batch}x{args.size}x{args.size}x3"
    print(f"normalise a {shape} uint8 batch ({images.nbytes / 1e6:.1f} MB) to CHW; median of {args.repeats} after {args.warmup} warm-up; 1 thread\n")
    print(format_table(["dtype", "contender", "ms/batch", "min-max ms", "GB/s", "vs torch"], rows, align="llrrrr"))
    if args.json:
        write_json(args.json, {"machine": machine_info(), "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
