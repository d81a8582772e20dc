"""k-NN probes and prediction depth (study-reference.md §8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from prunelens.depth import prediction_depth, probe_activations, probe_predictions
from prunelens.knn import knn_predict
from prunelens.models import WideResNetEncoder

# --------------------------------------------------------------------------- k-NN


def sklearn_knn(train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, k: int):
    return KNeighborsClassifier(n_neighbors=k).fit(train_x, train_y).predict(query_x)


def vote_ties(train_x, train_y, query_x, k: int, n_classes: int) -> int:
    """Queries whose k nearest neighbours split the vote between top classes."""
    dist = ((query_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(dist, axis=1)[:, :k]
    counts = np.stack([np.bincount(r, minlength=n_classes) for r in train_y[nearest]])
    top = counts.max(axis=1, keepdims=True)
    return int(((counts == top).sum(axis=1) > 1).sum())


@pytest.mark.parametrize(
    ("n_train", "n_query", "dim", "k", "n_classes", "chunk"),
    [
        (300, 101, 8, 1, 3, 1024),
        (300, 101, 8, 5, 3, 17),
        (500, 257, 32, 30, 10, 64),
        (200, 64, 4, 7, 5, 1),
        (400, 150, 16, 200, 10, 50),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_matches_sklearn_on_random_data(
    n_train: int, n_query: int, dim: int, k: int, n_classes: int, chunk: int, dtype
) -> None:
    # Continuous Gaussian features: distance ties have probability zero, so the
    # neighbour sets are unambiguous and sklearn is an exact oracle.
    rng = np.random.default_rng(n_train + k)
    train_x = rng.normal(size=(n_train, dim))
    train_y = rng.integers(0, n_classes, size=n_train)
    query_x = rng.normal(size=(n_query, dim))
    got = knn_predict(
        torch.tensor(train_x, dtype=dtype),
        torch.tensor(train_y),
        torch.tensor(query_x, dtype=dtype),
        k=k,
        n_classes=n_classes,
        chunk=chunk,
    )
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(
        got.numpy(), sklearn_knn(train_x, train_y, query_x, k)
    )


@pytest.mark.parametrize("k", [2, 4, 6])
def test_knn_vote_ties_match_sklearn(k: int) -> None:
    # Two classes and an even k: many queries split their votes evenly, and the
    # tie must go to class 0 however near the class-1 neighbours are.
    rng = np.random.default_rng(k)
    train_x = rng.normal(size=(400, 3))
    train_y = rng.integers(0, 2, size=400)
    query_x = rng.normal(size=(300, 3))
    assert vote_ties(train_x, train_y, query_x, k, 2) > 30
    got = knn_predict(
        torch.tensor(train_x, dtype=torch.float32),
        torch.tensor(train_y),
        torch.tensor(query_x, dtype=torch.float32),
        k=k,
        n_classes=2,
        chunk=64,
    )
    np.testing.assert_array_equal(
        got.numpy(), sklearn_knn(train_x, train_y, query_x, k)
    )


def test_knn_vote_ties_go_to_smallest_class_by_construction() -> None:
    # 1-D points with distinct distances. In each tie the nearest neighbour is of
    # the larger class, so a nearest-first tie-break would disagree with sklearn.
    train_x = np.array([[0.0], [1.0], [10.0], [11.0], [12.0], [13.0]])
    train_y = np.array([1, 0, 1, 1, 2, 2])
    query_x = np.array([[0.4], [12.6]])
    # k=2: 0.4 -> {1@.4, 0@.6} tie -> 0;  12.6 -> {2@.4, 2@.6} -> 2.
    # k=4: 0.4 -> {1, 0, 1, 1} -> 1;      12.6 -> {2, 2, 1@1.6, 1@2.6} tie -> 1.
    for k, expected in ((2, [0, 2]), (4, [1, 1])):
        got = knn_predict(
            torch.tensor(train_x),
            torch.tensor(train_y),
            torch.tensor(query_x),
            k=k,
            n_classes=3,
        )
        np.testing.assert_array_equal(got.numpy(), expected)
        np.testing.assert_array_equal(
            expected, sklearn_knn(train_x, train_y, query_x, k)
        )


def test_knn_is_accurate_for_offset_float32_data() -> None:
    # Large common offset: without centring, ||t||^2 ~ 1e8 would swamp float32.
    rng = np.random.default_rng(3)
    train_x = rng.normal(size=(300, 16)) + 1e3
    train_y = rng.integers(0, 4, size=300)
    query_x = rng.normal(size=(100, 16)) + 1e3
    got = knn_predict(
        torch.tensor(train_x, dtype=torch.float32),
        torch.tensor(train_y),
        torch.tensor(query_x, dtype=torch.float32),
        k=5,
        n_classes=4,
    )
    np.testing.assert_array_equal(
        got.numpy(), sklearn_knn(train_x, train_y, query_x, 5)
    )


def test_knn_k_equal_n_train_is_global_majority() -> None:
    train_x = torch.randn(9, 2)
    train_y = torch.tensor([0, 1, 1, 2, 2, 2, 1, 1, 0])
    got = knn_predict(train_x, train_y, torch.randn(5, 2), k=9, n_classes=3)
    assert got.tolist() == [1] * 5


def test_knn_rejects_bad_arguments() -> None:
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="k must be"):
        knn_predict(x, y, x, k=6, n_classes=2)
    with pytest.raises(ValueError, match="k must be"):
        knn_predict(x, y, x, k=0, n_classes=2)
    with pytest.raises(ValueError, match="features"):
        knn_predict(x, y, torch.randn(2, 4), k=1, n_classes=2)
    with pytest.raises(ValueError, match="train_y must lie"):
        knn_predict(x, y + 1, x, k=1, n_classes=2)
    with pytest.raises(ValueError, match="chunk"):
        knn_predict(x, y, x, k=1, n_classes=2, chunk=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_knn_cuda_matches_cpu() -> None:
    gen = torch.Generator().manual_seed(0)
    train_x = torch.randn(5000, 64, generator=gen)
    train_y = torch.randint(0, 10, (5000,), generator=gen)
    query_x = torch.randn(1000, 64, generator=gen)
    cpu = knn_predict(train_x, train_y, query_x, k=30, n_classes=10, chunk=300)
    gpu = knn_predict(
        train_x.cuda(), train_y.cuda(), query_x, k=30, n_classes=10, chunk=300
    )
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)


# ------------------------------------------------------------- prediction depth


def right_from(j: np.ndarray, n_layers: int, target: np.ndarray) -> np.ndarray:
    """Probe predictions that are wrong at probes < j and right from probe j on."""
    layer = np.arange(n_layers)[:, None]
    return np.where(layer >= j[None, :], target[None, :], (target[None, :] + 1) % 10)


def test_depth_when_right_from_probe_j_on() -> None:
    j = np.arange(17)  # 0: always right; 16: wrong at every probe
    target = np.arange(17) % 10
    preds = right_from(j, 16, target)
    corti = prediction_depth(preds, target)
    baldock = prediction_depth(preds, target, definition="baldock")
    # Corti: 1 + index of the last wrong probe (j - 1), and 1 if never wrong, so
    # "always right" and "wrong only at probe 0" collapse onto 1.
    np.testing.assert_array_equal(corti, np.maximum(j, 1))
    # Baldock: the number of probes before the prediction settles.
    np.testing.assert_array_equal(baldock, j)
    assert corti.dtype == baldock.dtype == np.int64


def test_depth_uses_last_wrong_probe_not_first() -> None:
    target = np.array([3, 3, 3])
    preds = np.full((8, 3), 3)
    preds[[2, 5], 0] = 4  # wrong at probes 2 and 5, right in between
    preds[0, 1] = 4  # wrong only at probe 0
    preds[7, 2] = 4  # wrong only at the last probe
    np.testing.assert_array_equal(prediction_depth(preds, target), [6, 1, 8])
    np.testing.assert_array_equal(
        prediction_depth(preds, target, definition="baldock"), [6, 1, 8]
    )


def test_baldock_depth_against_final_prediction() -> None:
    # With the network's final prediction as target, a wrong but stable example
    # is shallow under Baldock while Corti (true label) calls it maximally deep.
    labels = np.array([0, 0])
    preds = np.array([[1, 0], [2, 0], [2, 1], [2, 1]])
    final = np.array([2, 1])
    np.testing.assert_array_equal(
        prediction_depth(preds, final, definition="baldock"), [1, 2]
    )
    np.testing.assert_array_equal(prediction_depth(preds, labels), [4, 4])


def test_depth_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="target"):
        prediction_depth(np.zeros((4, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="L, N"):
        prediction_depth(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="definition"):
        prediction_depth(np.zeros((4, 3)), np.zeros(3), definition="other")  # type: ignore[arg-type]


# ------------------------------------------------------------ probe activations


def expected_probe_widths(width: int) -> list[int]:
    """Probe widths of WRN-16-width per §8.2: stem, then (mid, conv2[, sum])."""
    c1, c2, c3 = 16 * width, 32 * width, 64 * width
    # Block 0 of group 1 has an identity shortcut only when 16 == 16 * width.
    first = [c1, c1, c1] if width == 1 else [c1, c1]
    return [16, *first, c1, c1, c1, c2, c2, c2, c2, c2, c3, c3, c3, c3, c3]


@pytest.mark.parametrize("width", [1, 2])
def test_probe_activations_widths_and_values(width: int) -> None:
    torch.manual_seed(0)
    encoder = WideResNetEncoder(16, width)
    encoder.train()
    images = torch.randn(10, 3, 8, 8)
    acts = probe_activations(encoder, images, batch=4, device="cpu")
    assert [a.shape for a in acts] == [(10, w) for w in expected_probe_widths(width)]
    assert all(a.dtype == np.float32 for a in acts)
    assert encoder.training  # mode restored
    encoder.eval()
    with torch.no_grad():
        direct = encoder.forward_probes(images)
    for a, d in zip(acts, direct, strict=True):
        np.testing.assert_allclose(a, d.numpy(), rtol=1e-5, atol=1e-6)


def test_wrn_16_2_has_16_probes() -> None:
    acts = probe_activations(WideResNetEncoder(16, 2), torch.randn(2, 3, 8, 8))
    assert len(acts) == 16
    assert [a.shape[1] for a in acts] == expected_probe_widths(2)


def test_probe_predictions_runs_knn_per_layer() -> None:
    rng = np.random.default_rng(5)
    train_y = rng.integers(0, 3, size=60)
    train = [rng.normal(size=(60, d)).astype(np.float32) for d in (4, 8)]
    test = [rng.normal(size=(25, d)).astype(np.float32) for d in (4, 8)]
    preds = probe_predictions(train, train_y, test, k=5, n_classes=3, chunk=7)
    assert preds.shape == (2, 25)
    assert preds.dtype == np.int64
    for layer in range(2):
        np.testing.assert_array_equal(
            preds[layer], sklearn_knn(train[layer], train_y, test[layer], 5)
        )
    with pytest.raises(ValueError, match="probes"):
        probe_predictions(train, train_y, test[:1], k=5, n_classes=3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_probe_pipeline_on_cuda_matches_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # cuDNN convolutions default to TF32 (~1e-3 relative error by the last probe);
    # switch it off so the comparison checks the pipeline, not the arithmetic.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    encoder = WideResNetEncoder(16, 2)
    images = torch.randn(64, 3, 32, 32)
    cpu = probe_activations(encoder, images, batch=16, device="cpu")
    gpu = probe_activations(encoder, images, batch=16, device="cuda")
    for a, b in zip(cpu, gpu, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    labels = np.arange(64) % 10
    preds = probe_predictions(gpu, labels, gpu, k=3, n_classes=10, device="cuda")
    assert preds.shape == (16, 64)


def test_knn_restores_matmul_precision() -> None:
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
        knn_predict(x, y, x, k=1, n_classes=2)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(previous)
