"""Throughput of prunelens.augment against torchvision's per-image PIL pipelines.

Run from the repository root:

    python benchmarks/bench_augment.py [--batch 512] [--repeats 7] [--threads N]

Times, on one batch of random uint8 CIFAR-sized images:

* ``crop_flip`` vs RandomCrop(32, 4) + RandomVerticalFlip + RandomHorizontalFlip
  + ToTensor (the supervised transform);
* ``two_views`` vs RandomResizedCrop(32, (0.2, 1)) + RandomHorizontalFlip +
  RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), 0.8) + RandomGrayscale(0.2) +
  ToTensor, applied twice per image (the SupCon transform).

The torchvision pipelines start from PIL images (as torchvision's CIFAR10
dataset hands them out) and end with ``torch.stack`` (the DataLoader's
collate); the batched ones start from the float batch of ``to_unit_float``,
whose cost is listed on its own. Each row is the median over ``--repeats``
timed runs after one warm-up; images/s counts source images (a SupCon row
makes two views of each). With CUDA available the batched functions are also
timed on the GPU.

On CPU the batched ops allocate many batch-sized temporaries, and glibc's
malloc hands such blocks back to the OS and page-faults them in again each
time; ``MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000``
in the environment avoids that. On a machine shared with other jobs,
``--threads 1`` avoids OpenMP threads waiting on each other.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

try:
    from prunelens.augment import crop_flip, to_unit_float, two_views
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from prunelens.augment import crop_flip, to_unit_float, two_views


def _median_seconds(fn: Callable[[], object], repeats: int, sync: bool) -> float:
    def once() -> float:
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once()  # warm-up: allocator, kernels, lazy imports
    return statistics.median(once() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    n = args.batch

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    pil = [Image.fromarray(img) for img in raw]
    raw_t = torch.from_numpy(raw)
    x = to_unit_float(raw_t)
    gen = torch.Generator().manual_seed(0)

    supervised = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomVerticalFlip(),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
        ]
    )
    contrastive = T.Compose(
        [
            T.RandomResizedCrop(32, scale=(0.2, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToTensor(),
        ]
    )

    def tv_supervised() -> torch.Tensor:
        return torch.stack([supervised(img) for img in pil])

    def tv_two_views() -> tuple[torch.Tensor, torch.Tensor]:
        views = [(contrastive(img), contrastive(img)) for img in pil]
        return torch.stack([a for a, _ in views]), torch.stack([b for _, b in views])

    rows: list[tuple[str, str, float]] = [
        ("to_unit_float (uint8 NHWC -> float NCHW)", "cpu", 0.0),
        ("torchvision PIL RandomCrop+VFlip+HFlip+ToTensor", "cpu", 0.0),
        ("prunelens crop_flip", "cpu", 0.0),
        ("torchvision PIL SimCLR transform x2 + ToTensor", "cpu", 0.0),
        ("prunelens two_views", "cpu", 0.0),
    ]
    fns: list[Callable[[], object]] = [
        lambda: to_unit_float(raw_t),
        tv_supervised,
        lambda: crop_flip(x, gen),
        tv_two_views,
        lambda: two_views(x, gen),
    ]
    rows = [
        (name, dev, _median_seconds(fn, args.repeats, sync=False))
        for (name, dev, _), fn in zip(rows, fns, strict=True)
    ]

    if torch.cuda.is_available():
        x_gpu = x.cuda()
        raw_gpu = raw_t.cuda()
        gen_gpu = torch.Generator(device="cuda").manual_seed(0)
        for name, fn in [
            (
                "to_unit_float (uint8 NHWC -> float NCHW)",
                lambda: to_unit_float(raw_gpu),
            ),
            ("prunelens crop_flip", lambda: crop_flip(x_gpu, gen_gpu)),
            ("prunelens two_views", lambda: two_views(x_gpu, gen_gpu)),
        ]:
            rows.append((name, "cuda", _median_seconds(fn, args.repeats, sync=True)))

    print(
        f"batch {n}, torch {torch.__version__}, {torch.get_num_threads()} CPU "
        f"threads, median of {args.repeats}"
    )
    print(f"{'pipeline':50} {'device':6} {'ms/batch':>10} {'images/s':>12}")
    for name, dev, seconds in rows:
        print(f"{name:50} {dev:6} {seconds * 1e3:10.2f} {n / seconds:12,.0f}")


if __name__ == "__main__":
    main()
