"""Benchmark ``prunelens.knn.knn_predict`` against sklearn's KNeighborsClassifier.

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_knn.py [--device cuda]

Both classifiers (k = 30, 10 classes, float32) on the same random data, first of a
small size (10,000 train x 2,000 query, dim 64), then of one full-size
prediction-depth probe (50,000 train x 10,000 test, dim 128: the widest WRN-16-2
probe); prints both times, their ratio and whether the predictions agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from prunelens.knn import knn_predict

K = 30
N_CLASSES = 10


def random_data(
    n_train: int, n_query: int, dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Non-negative like post-ReLU GAP activations; float32 like the probes.
    train_x = np.abs(rng.normal(size=(n_train, dim))).astype(np.float32)
    train_y = rng.integers(0, N_CLASSES, size=n_train)
    query_x = np.abs(rng.normal(size=(n_query, dim))).astype(np.float32)
    return train_x, train_y, query_x


def time_knn_predict(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    device: torch.device,
    chunk: int,
) -> tuple[float, np.ndarray]:
    """Seconds for one call, including the host-to-device copies."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    preds = knn_predict(
        torch.from_numpy(train_x).to(device),
        torch.from_numpy(train_y).to(device),
        torch.from_numpy(query_x).to(device),
        k=K,
        n_classes=N_CLASSES,
        chunk=chunk,
    ).cpu()
    return time.perf_counter() - start, preds.numpy()


def bench(
    size: list[int], device: torch.device, chunk: int, seed: int, with_sklearn: bool
) -> None:
    n_train, n_query, dim = size
    train_x, train_y, query_x = random_data(n_train, n_query, dim, seed)
    ours, preds = time_knn_predict(train_x, train_y, query_x, device, chunk)
    print(f"[{n_train} train x {n_query} query, dim {dim}, k={K}]")
    print(f"  knn_predict {ours:8.3f} s")
    if not with_sklearn:
        return
    start = time.perf_counter()
    reference = (
        KNeighborsClassifier(n_neighbors=K).fit(train_x, train_y).predict(query_x)
    )
    theirs = time.perf_counter() - start
    print(f"  sklearn     {theirs:8.3f} s")
    print(f"  ratio       {theirs / ours:8.1f} x (sklearn time / knn_predict time)")
    print(f"  agreement   {(preds == reference).mean():.4%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--small", type=int, nargs=3, default=[10_000, 2_000, 64])
    parser.add_argument("--full", type=int, nargs=3, default=[50_000, 10_000, 128])
    parser.add_argument(
        "--no-sklearn-full",
        action="store_true",
        help="skip sklearn on the full-size layer (a few seconds with sklearn 1.9)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}"
    )
    # Warm-up so one-off allocator/kernel set-up is not billed to the timed calls.
    time_knn_predict(*random_data(2_000, 100, 8, seed=2), device, args.chunk)
    bench(args.small, device, args.chunk, seed=0, with_sklearn=True)
    bench(args.full, device, args.chunk, seed=1, with_sklearn=not args.no_sklearn_full)


if __name__ == "__main__":
    main()
