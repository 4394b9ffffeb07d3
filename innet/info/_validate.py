"""Input checks shared by the :mod:`innet.info` modules (private).

Every public function of the family turns its array arguments into float64
numpy arrays here and raises one :class:`ValueError` with a message naming the
argument and what is wrong with it. Probability vectors and row-stochastic
matrices are accepted when they are non-negative and each sums to 1 within
``STOCHASTIC_ATOL`` (loose enough for float32 softmax output converted by a
caller); they are then renormalised exactly, so the float error does not
propagate.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__: list[str] = []

STOCHASTIC_ATOL = 1e-5
"""How far from 1 the sum of a probability vector (or of a row) may be."""


def as_float_array(x: ArrayLike, name: str, *, ndim: tuple[int, ...]) -> NDArray[np.float64]:
    """``x`` as a finite float64 array with one of the allowed numbers of dimensions."""
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array of numbers ({error})") from None
    if array.ndim not in ndim:
        allowed = " or ".join(str(d) for d in ndim)
        raise ValueError(f"{name} must have {allowed} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must contain only finite numbers")
    return array


def as_stochastic(
    x: ArrayLike, name: str, *, ndim: tuple[int, ...] = (1, 2)
) -> NDArray[np.float64]:
    """``x`` checked to be a probability vector (1-d) or row-stochastic matrix (2-d).

    Raises ``ValueError("<name> must be ... : <what is wrong>")``; returns a
    renormalised float64 copy.
    """
    array = as_float_array(x, name, ndim=ndim)
    what = "a probability vector" if array.ndim == 1 else "row-stochastic (rows are distributions)"
    if np.any(array < 0):
        index = np.unravel_index(np.argmin(array), array.shape)
        where = f"entry {tuple(int(i) for i in index)}" if array.ndim > 1 else f"entry {index[0]}"
        raise ValueError(
            f"{name} must be {what}: non-negative entries summing to 1; "
            f"{where} is {array[index]:.6g}"
        )
    sums = array.sum(axis=-1)
    bad = np.abs(sums - 1.0) > STOCHASTIC_ATOL
    if np.any(bad):
        if array.ndim == 1:
            where = f"it sums to {float(sums):.9g}"
        else:
            row = int(np.argmax(bad))
            where = f"row {row} sums to {float(sums[row]):.9g}"
        raise ValueError(f"{name} must be {what}: non-negative entries summing to 1; {where}")
    return array / sums[..., None] if array.ndim > 1 else array / sums


def as_positive_number(x: float, name: str, *, allow_zero: bool = False) -> float:
    """``x`` as a finite float that is positive (or non-negative with ``allow_zero``)."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number, got {x!r}")
    return value


def log_of_base(base: float) -> float:
    """``ln(base)``, the divisor that turns nats into units of ``base`` (2 for bits)."""
    value = as_positive_number(base, "base")
    if value == 1.0:
        raise ValueError("base must be a positive number other than 1, got 1")
    return math.log(value)
