"""Datasets: shapes, dtypes, determinism, splits, IDX files, and sensor views."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.core.datasets import (
    Dataset,
    load_digits_dataset,
    load_idx_dataset,
    make_gaussian_mixture,
    noisy_views,
    read_idx,
    split_views,
    write_idx,
)
from innet.core.errors import InnetError


def assert_well_formed(data: Dataset) -> None:
    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert data.x_train.ndim == 2 and data.x_test.shape[1] == data.x_train.shape[1]
    assert len(data.x_train) == len(data.y_train) and len(data.x_test) == len(data.y_test)
    assert data.y_train.min() >= 0 and max(data.y_train.max(), data.y_test.max()) < data.n_classes


def assert_standardised_by_train(data: Dataset) -> None:
    std = data.x_train.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(data.x_train.astype(np.float64).mean(axis=0), 0.0, atol=1e-5)
    varying = std > 1e-6
    np.testing.assert_allclose(std[varying], 1.0, atol=1e-4)


def nearest_mean_accuracy(data: Dataset) -> float:
    means = np.stack([data.x_train[data.y_train == c].mean(axis=0) for c in range(data.n_classes)])
    distances = ((data.x_test[:, None, :] - means[None]) ** 2).sum(axis=-1)
    return float((distances.argmin(axis=1) == data.y_test).mean())


# --- scikit-learn digits ---------------------------------------------------------------


def test_digits_shapes_and_standardisation() -> None:
    data = load_digits_dataset(seed=0)
    assert_well_formed(data)
    assert data.name == "digits" and data.n_classes == 10 and data.n_features == 64
    assert len(data.x_train) + len(data.x_test) == 1797
    assert len(data.x_test) == round(1797 * 0.2)
    assert_standardised_by_train(data)


def test_digits_split_is_stratified() -> None:
    data = load_digits_dataset(seed=3, test_fraction=0.3)
    train_share = np.bincount(data.y_train) / len(data.y_train)
    test_share = np.bincount(data.y_test) / len(data.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)


def test_digits_deterministic_by_seed() -> None:
    first, again, other = (load_digits_dataset(seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    assert not np.array_equal(first.y_train, other.y_train)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_test_fraction(fraction: float) -> None:
    with pytest.raises(InnetError, match="test_fraction"):
        load_digits_dataset(seed=0, test_fraction=fraction)


# --- Gaussian mixture ------------------------------------------------------------------


def test_gaussian_mixture_at_1e5() -> None:
    data = make_gaussian_mixture(n_samples=100_000, n_features=64, n_classes=10, seed=0)
    assert_well_formed(data)
    assert data.x_train.shape == (80_000, 64) and data.x_test.shape == (20_000, 64)
    counts = np.bincount(np.concatenate([data.y_train, data.y_test]))
    assert counts.max() - counts.min() <= 1
    assert_standardised_by_train(data)


def test_gaussian_mixture_deterministic() -> None:
    kwargs = dict(n_samples=2_000, n_features=5, n_classes=3)
    first = make_gaussian_mixture(seed=4, **kwargs)
    again = make_gaussian_mixture(seed=4, **kwargs)
    other = make_gaussian_mixture(seed=5, **kwargs)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    assert not np.array_equal(first.x_train, other.x_train)


def test_gaussian_mixture_class_sep_controls_difficulty() -> None:
    kwargs = dict(n_samples=6_000, n_features=16, n_classes=4, seed=0)
    close = nearest_mean_accuracy(make_gaussian_mixture(class_sep=0.5, **kwargs))
    apart = nearest_mean_accuracy(make_gaussian_mixture(class_sep=6.0, **kwargs))
    assert 0.3 < close < 0.7
    assert apart > 0.99


def test_gaussian_mixture_rejects_degenerate_sizes() -> None:
    with pytest.raises(InnetError, match="n_classes"):
        make_gaussian_mixture(n_samples=10, n_features=2, n_classes=1, seed=0)


@pytest.mark.slow
def test_gaussian_mixture_at_1e6_in_modest_memory() -> None:
    tracemalloc.start()
    try:
        data = make_gaussian_mixture(n_samples=1_000_000, n_features=64, n_classes=10, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data.x_train.shape == (800_000, 64)
    features_bytes = 1_000_000 * 64 * 4
    assert peak < 1.5 * features_bytes
    assert_standardised_by_train(data)


# --- IDX files -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8", ">i2", "<i4", "float32", "float64"])
@pytest.mark.parametrize("name", ["array.idx", "array.idx.gz"])
def test_idx_round_trip(tmp_path: Path, dtype: str, name: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.shape == array.shape and back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)


def test_idx_bytes_follow_the_mnist_layout(tmp_path: Path) -> None:
    write_idx(tmp_path / "a", np.array([[1, 2, 3], [4, 5, 255]], dtype=np.uint8))
    expected = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255])
    assert (tmp_path / "a").read_bytes() == expected
    write_idx(tmp_path / "b.gz", np.array([258], dtype=np.int32))
    assert gzip.decompress((tmp_path / "b.gz").read_bytes()) == bytes(
        [0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 1, 2]
    )


def test_idx_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "magic").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x07")
    with pytest.raises(InnetError, match="not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "short").write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(InnetError, match="needs 5"):
        read_idx(tmp_path / "short")
    with pytest.raises(InnetError, match="absent"):
        read_idx(tmp_path / "absent")
    with pytest.raises(ValueError, match="cannot store"):
        write_idx(tmp_path / "c", np.zeros(2, dtype=np.complex64))


def write_mnist_like(
    directory: Path, prefix: str, n: int, *, seed: int, suffix: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Tiny 4x3 uint8 images with labels 0..3 cycling; one pixel constant."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 4, 3), dtype=np.uint8)
    images[:, 0, 0] = 7
    labels = (np.arange(n) % 4).astype(np.uint8)
    directory.mkdir(exist_ok=True)
    write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


def test_load_idx_dataset_uses_t10k_as_test_split(tmp_path: Path) -> None:
    directory = tmp_path / "mnistish"
    train_images, train_labels = write_mnist_like(directory, "train", 40, seed=0)
    test_images, test_labels = write_mnist_like(directory, "t10k", 12, seed=1, suffix=".gz")
    data = load_idx_dataset(directory, seed=0)
    assert_well_formed(data)
    assert data.name == "mnistish" and data.n_classes == 4
    np.testing.assert_array_equal(data.y_train, train_labels)
    np.testing.assert_array_equal(data.y_test, test_labels)
    train = train_images.reshape(40, -1) / 255.0
    test = test_images.reshape(12, -1) / 255.0
    std = train.std(axis=0)
    std[train.min(axis=0) == train.max(axis=0)] = 1.0
    np.testing.assert_allclose(data.x_train, (train - train.mean(axis=0)) / std, atol=1e-5)
    np.testing.assert_allclose(data.x_test, (test - train.mean(axis=0)) / std, atol=1e-5)


def test_load_idx_dataset_splits_without_t10k(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, "train", 40, seed=0, suffix=".gz")
    data = load_idx_dataset(tmp_path, seed=0, test_fraction=0.25)
    again = load_idx_dataset(tmp_path, seed=0, test_fraction=0.25)
    other = load_idx_dataset(tmp_path, seed=1, test_fraction=0.25)
    assert_well_formed(data)
    assert data.x_train.shape == (30, 12) and data.x_test.shape == (10, 12)
    assert sorted(np.bincount(data.y_test).tolist()) == [2, 2, 3, 3]  # stratified
    np.testing.assert_array_equal(data.x_test, again.x_test)
    assert not np.array_equal(data.x_test, other.x_test)
    assert_standardised_by_train(data)


def test_load_idx_dataset_limit(tmp_path: Path) -> None:
    _, train_labels = write_mnist_like(tmp_path, "train", 40, seed=0)
    write_mnist_like(tmp_path, "t10k", 12, seed=1)
    data = load_idx_dataset(tmp_path, seed=0, limit=9)
    np.testing.assert_array_equal(data.y_train, train_labels[:9])
    assert len(data.y_test) == 9


def test_load_idx_dataset_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(InnetError, match="nowhere"):
        load_idx_dataset(tmp_path / "nowhere", seed=0)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), dtype=np.uint8))
    with pytest.raises(InnetError, match="train-labels-idx1-ubyte"):
        load_idx_dataset(tmp_path, seed=0)


def test_load_idx_dataset_mismatched_counts(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(InnetError, match="labels"):
        load_idx_dataset(tmp_path, seed=0)


# --- views -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n_rows=st.integers(1, 5),
    n_features=st.integers(1, 40),
    data=st.data(),
)
def test_split_views_cover_features_disjointly(n_rows: int, n_features: int, data) -> None:
    n_views = data.draw(st.integers(1, n_features))
    x = np.arange(n_rows * n_features).reshape(n_rows, n_features)
    views = split_views(x, n_views)
    assert len(views) == n_views
    widths = [view.shape[1] for view in views]
    assert min(widths) >= 1 and max(widths) - min(widths) <= 1
    np.testing.assert_array_equal(np.concatenate(views, axis=1), x)


def test_split_views_rejects_more_views_than_features() -> None:
    with pytest.raises(InnetError, match="3 features into 4 views"):
        split_views(np.zeros((2, 3)), 4)


def test_noisy_views_reach_the_requested_snr() -> None:
    x = (3.0 * np.random.default_rng(0).standard_normal((20_000, 8))).astype(np.float32)
    snr_db = [-5.0, 0.0, 10.0, 20.0]
    views = noisy_views(x, snr_db, seed=7)
    power = np.mean(x.astype(np.float64) ** 2)
    for view, snr in zip(views, snr_db, strict=True):
        assert view.shape == x.shape and view.dtype == np.float32
        noise = view.astype(np.float64) - x
        measured = 10 * np.log10(power / np.mean(noise**2))
        assert measured == pytest.approx(snr, abs=0.05)
        assert abs(np.corrcoef(noise.ravel(), x.ravel())[0, 1]) < 0.01


def test_noisy_views_independent_and_seeded() -> None:
    x = np.random.default_rng(1).standard_normal((5_000, 4)).astype(np.float32)
    first = noisy_views(x, [0.0, 0.0], seed=3)
    again = noisy_views(x, [0.0, 0.0], seed=3)
    other = noisy_views(x, [0.0, 0.0], seed=4)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    noise_a, noise_b = (view - x for view in first)
    assert abs(np.corrcoef(noise_a.ravel(), noise_b.ravel())[0, 1]) < 0.03
