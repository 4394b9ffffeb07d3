"""Datasets for the simulator, and the views that sensors observe.

A :class:`Dataset` is a classification task split into a training and a test
part: features ``x`` (float32, one row per sample) and integer labels ``y``
(int64, ``0 .. n_classes - 1``). Features are standardised (zero mean, unit
variance per feature) with statistics taken from the training split only, so
nothing about the test split leaks into training.

Three sources, none of which downloads anything:

- :func:`load_digits_dataset`: scikit-learn's bundled 8x8 handwritten digits
  (1,797 samples, 64 features, 10 classes).
- :func:`make_gaussian_mixture`: a synthetic mixture of Gaussians of any size
  (one isotropic unit-variance Gaussian per class), generated vectorised so a
  million samples take seconds.
- :func:`load_idx_dataset`: MNIST-style IDX files already on disk, read and
  written by :func:`read_idx` and :func:`write_idx`.

In in-network learning each sensor sees only one *view* of a sample.
:func:`split_views` cuts the features into disjoint blocks (each sensor sees
some pixels); :func:`noisy_views` gives every sensor the whole input with its
own independent Gaussian noise at a chosen signal-to-noise ratio.

Everything is deterministic for a given seed.

>>> data = make_gaussian_mixture(n_samples=1000, n_features=8, n_classes=3, seed=0)
>>> data.x_train.shape, data.x_test.shape, data.n_classes
((800, 8), (200, 8), 3)
>>> [view.shape[1] for view in split_views(data.x_train, 3)]
[3, 3, 2]
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from innet.core.errors import InnetError

__all__ = [
    "Dataset",
    "load_digits_dataset",
    "make_gaussian_mixture",
    "read_idx",
    "write_idx",
    "load_idx_dataset",
    "split_views",
    "noisy_views",
]


@dataclass
class Dataset:
    """A classification task: standardised float32 features and int64 labels, split in two."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        """Number of features (columns of ``x_train``)."""
        return int(self.x_train.shape[1])


def load_digits_dataset(*, seed: int, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled 8x8 digits, split stratified by class with ``seed``.

    >>> data = load_digits_dataset(seed=0)
    >>> data.x_train.shape, data.n_classes
    ((1438, 64), 10)
    """
    _check_test_fraction(test_fraction)
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = _split(x, y, seed=seed, test_fraction=test_fraction)
    return _standardised(
        "digits", x_train, y_train, x_test, y_test, n_classes=int(digits.target.max()) + 1
    )


def make_gaussian_mixture(
    *,
    n_samples: int,
    n_features: int,
    n_classes: int,
    seed: int,
    test_fraction: float = 0.2,
    class_sep: float = 2.0,
) -> Dataset:
    """A mixture of ``n_classes`` unit-variance Gaussians in ``n_features`` dimensions.

    Each class mean is a random direction (uniform on the sphere, drawn by
    ``seed``) scaled to length ``class_sep``, so two class means lie about
    ``class_sep * sqrt(2)`` noise standard deviations apart. Labels are
    balanced (class counts differ by at most one) and shuffled; the last
    ``round(n_samples * test_fraction)`` samples form the test split, which
    is a random split because samples are drawn independently.

    Generation works in float32 and in place, so one million samples of 64
    features need about 300 MB and a few seconds.
    """
    if n_samples < 2 or n_features < 1 or n_classes < 2:
        raise InnetError(
            "gaussian mixture needs n_samples >= 2, n_features >= 1 and n_classes >= 2, got "
            f"n_samples={n_samples}, n_features={n_features}, n_classes={n_classes}"
        )
    _check_test_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_classes, n_features))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    means = (class_sep * directions).astype(np.float32)
    y = rng.permutation(np.arange(n_samples, dtype=np.int64) % n_classes)
    x = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    chunk = 65_536
    for start in range(0, n_samples, chunk):
        x[start : start + chunk] += means[y[start : start + chunk]]
    n_test = _n_test(n_samples, test_fraction)
    n_train = n_samples - n_test
    return _standardised(
        "gaussian_mixture",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        n_classes=n_classes,
    )


# IDX type codes (third byte of the magic number) and their big-endian numpy dtypes.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format); a name ending in ``.gz`` is decompressed.

    The file is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B
    int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions,
    each dimension as a big-endian uint32, then the values, big-endian, in C
    order. The array comes back in native byte order.
    """
    path = Path(path)
    if not path.is_file():
        raise InnetError(f"IDX file not found: {path}")
    with _open(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InnetError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype = _IDX_DTYPES[raw[2]]
    n_dims = raw[3]
    header_end = 4 + 4 * n_dims
    if len(raw) < header_end:
        raise InnetError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise InnetError(
            f"{path}: IDX data has {len(raw) - header_end} bytes, "
            f"shape {shape} of {dtype.name} needs {expected}"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in ``.gz``).

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        supported = ", ".join(sorted(dtype.name for dtype in codes))
        raise ValueError(f"IDX cannot store dtype {array.dtype} (supported: {supported})")
    if array.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, got {array.ndim}")
    big_endian = array.astype(native.newbyteorder(">"), copy=False)
    header = bytes([0, 0, codes[native], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    with _open(Path(path), "wb") as stream:
        stream.write(header)
        stream.write(np.ascontiguousarray(big_endian).tobytes())


def load_idx_dataset(
    directory: str | Path,
    *,
    seed: int,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> Dataset:
    """An MNIST-style dataset from IDX files in ``directory`` (plain or ``.gz``).

    Reads ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``. When
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` are present they
    are the test split (``test_fraction`` is then unused); otherwise the
    training files are split stratified by class with ``seed``. ``limit``
    keeps only the first ``limit`` samples of each pair of files (for quick
    runs). Images are flattened, scaled to [0, 1] (integers divided by their
    type's maximum), then standardised with training statistics. The dataset
    is named after the directory.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InnetError(f"IDX dataset directory not found: {directory}")
    if limit is not None and limit < 1:
        raise InnetError(f"limit must be a positive number of samples, got {limit}")
    x_train, y_train = _read_idx_pair(directory, "train", limit)
    if _find_idx(directory, "t10k-images-idx3-ubyte") is not None:
        x_test, y_test = _read_idx_pair(directory, "t10k", limit)
    else:
        _check_test_fraction(test_fraction)
        x_train, x_test, y_train, y_test = _split(
            x_train, y_train, seed=seed, test_fraction=test_fraction
        )
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    return _standardised(directory.name, x_train, y_train, x_test, y_test, n_classes=n_classes)


def split_views(x: np.ndarray, n_views: int) -> list[np.ndarray]:
    """Cut the features (columns) of ``x`` into ``n_views`` disjoint contiguous blocks.

    Blocks differ in width by at most one feature (``np.array_split``) and
    together cover every feature in order.

    >>> [v.tolist() for v in split_views(np.arange(5).reshape(1, 5), 2)]
    [[[0, 1, 2]], [[3, 4]]]
    """
    n_features = x.shape[1]
    if not 1 <= n_views <= n_features:
        raise InnetError(f"cannot split {n_features} features into {n_views} views")
    return np.array_split(x, n_views, axis=1)


def noisy_views(x: np.ndarray, snr_db: Sequence[float], seed: int) -> list[np.ndarray]:
    """One view per entry of ``snr_db``: all of ``x`` plus independent Gaussian noise.

    The signal power is the mean of ``x**2`` over all of ``x``; view ``i``
    gets noise of variance ``power / 10**(snr_db[i] / 10)``, drawn from a
    stream determined by ``(seed, i)`` alone. Use different seeds for the
    training and the test features, or their noise would repeat row for row.
    """
    power = float(np.mean(np.square(x, dtype=np.float64)))
    views = []
    for index, snr in enumerate(snr_db):
        rng = np.random.default_rng([seed, index])
        noise_std = np.float32(np.sqrt(power / 10 ** (snr / 10)))
        noise = rng.standard_normal(x.shape, dtype=np.float32)
        noise *= noise_std
        noise += x
        views.append(noise)
    return views


def _open(path: Path, mode: str) -> IO[bytes]:
    """Open ``path`` in binary ``mode``, through gzip when the name ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)


def _find_idx(directory: Path, name: str) -> Path | None:
    """``directory/name`` or ``directory/name.gz``, whichever exists, else None."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_pair(
    directory: Path, prefix: str, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Images (flattened, scaled to [0, 1]) and int64 labels of ``prefix``-* IDX files."""
    images_path = _require_idx(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _require_idx(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim < 1 or labels.ndim != 1 or len(images) != len(labels):
        raise InnetError(
            f"{images_path} holds {images.shape[:1]} images but {labels_path} holds "
            f"labels of shape {labels.shape}"
        )
    if len(labels) == 0:
        raise InnetError(f"{labels_path}: holds no samples")
    if labels.min() < 0:
        raise InnetError(f"{labels_path}: labels must be non-negative")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.reshape(len(images), -1).astype(np.float32)
    if np.issubdtype(images.dtype, np.integer):
        x /= np.iinfo(images.dtype).max
    return x, labels.astype(np.int64)


def _require_idx(directory: Path, name: str) -> Path:
    """The path of IDX file ``name`` (plain or .gz) in ``directory``, or InnetError."""
    path = _find_idx(directory, name)
    if path is None:
        raise InnetError(f"IDX file not found: {directory / name} (nor {name}.gz)")
    return path


def _check_test_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise InnetError(f"test_fraction must be between 0 and 1, got {test_fraction}")


def _n_test(n_samples: int, test_fraction: float) -> int:
    """Test-split size: ``round(n * fraction)``, leaving at least one sample on each side."""
    return min(max(round(n_samples * test_fraction), 1), n_samples - 1)


def _split(
    x: np.ndarray, y: np.ndarray, *, seed: int, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random train/test split by ``seed``; stratified by class whenever that is possible.

    Stratifying needs every class twice and room for every class on both
    sides; tiny datasets (e.g. a small ``limit``) fall back to a plain split.
    """
    if len(y) < 2:
        raise InnetError(f"cannot split {len(y)} sample(s) into train and test")
    n_test = _n_test(len(y), test_fraction)
    counts = np.bincount(y)
    n_present = int(np.count_nonzero(counts))
    can_stratify = counts[counts > 0].min() >= 2 and min(n_test, len(y) - n_test) >= n_present
    return train_test_split(
        x, y, test_size=n_test, random_state=seed, stratify=y if can_stratify else None
    )


def _standardised(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_classes: int,
) -> Dataset:
    """A Dataset with features shifted and scaled in place by training mean and std.

    Features that are constant in training (all values equal) are only centred.
    """
    mean, std = _column_mean_std(x_train)
    std[x_train.min(axis=0) == x_train.max(axis=0)] = 1.0
    for x in (x_train, x_test):
        x -= mean.astype(np.float32)
        x /= std.astype(np.float32)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train.astype(np.int64, copy=False),
        x_test=x_test,
        y_test=y_test.astype(np.int64, copy=False),
        n_classes=n_classes,
    )


def _column_mean_std(x: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation in float64, two passes over row chunks.

    Working in chunks keeps the float64 temporaries small for large ``x``.
    """
    total = np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        total += x[start : start + chunk].sum(axis=0, dtype=np.float64)
    mean = total / len(x)
    squares = np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        squares += np.square(x[start : start + chunk] - mean).sum(axis=0)
    return mean, np.sqrt(squares / len(x))
