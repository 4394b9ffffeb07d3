"""The data sets a bank's experts learn from, by name: both ship or are made offline.

- ``digits``: scikit-learn's bundled 8 x 8 handwritten digits (10 classes);
- ``mnist1d``: MNIST-1D made by the ``mnist1d`` package's ``make_dataset``
  with explicit arguments (never its download path), ``mnist1d_samples``
  samples from ``seed``.

Each loader returns ``(features, labels)``, features float64 and labels int64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from innet.core.registry import Registry

__all__ = ["DATASETS", "Loader"]

Loader = Callable[..., tuple[NDArray[np.float64], NDArray[np.int64]]]
"""A data set's loader: keywords ``seed`` and ``mnist1d_samples``; ``(features, labels)``."""

DATASETS: Registry[Loader] = Registry("bank dataset")
"""Bank data sets by name (a scenario's ``bank.dataset``)."""


@DATASETS.register("digits")
def _digits(*, seed: int, mnist1d_samples: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float64), data.target.astype(np.int64)


@DATASETS.register("mnist1d")
def _mnist1d(*, seed: int, mnist1d_samples: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """MNIST-1D made locally by ``make_dataset`` with explicit arguments (no download)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = mnist1d_samples
    args.seed = seed
    state = np.random.get_state()  # make_dataset seeds numpy's global generator
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float64)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y
