"""From a scenario's data block and a topology to what each node observes.

The ``data`` block (:class:`DataConfig`) names a dataset and how sensors see
it, both from a registry here (:data:`DATASETS`, :data:`VIEWS`): adding one is
one function registered as a :class:`DataChoice`.

Loads the dataset for a seed (the train/test split depends on the seed, so all
variants of one seed see the same samples), then gives every sensor its view:
a disjoint block of features (``split``) or the whole input with independent
noise at a per-sensor SNR (``noisy``). A sensor's ``view`` attribute picks its
block; sensors without one take the blocks in node order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

import numpy as np
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from innet.core.datasets import (
    Dataset,
    load_digits_dataset,
    load_idx_dataset,
    make_gaussian_mixture,
    noisy_views,
    split_views,
)
from innet.core.registry import Registry
from innet.core.topology.model import Topology
from innet.core.yamlio import FieldError

Make = TypeVar("Make")

__all__ = [
    "DATASETS",
    "VIEWS",
    "DataChoice",
    "DataConfig",
    "NodeInputs",
    "load_inputs",
    "sensor_view_indices",
]


@dataclass(frozen=True)
class DataChoice(Generic[Make]):
    """A dataset or a way of viewing it: the function that makes it, and the data block's
    fields only it uses (the others are left out of a run's ``config.yaml``)."""

    make: Make
    fields: tuple[str, ...] = ()


DATASETS: Registry[DataChoice[Callable[[DataConfig, int], Dataset]]] = Registry("dataset")
"""The datasets a scenario's ``data.dataset`` may name: ``(data block, seed) -> Dataset``."""
VIEWS: Registry[DataChoice[Callable[[DataConfig, Dataset, int, int], tuple]]] = Registry("views")
"""How sensors see the data (``data.views``): ``(data block, dataset, views, seed) ->
(train blocks, test blocks)``; disjoint feature blocks or noisy copies."""


class DataConfig(BaseModel):
    """The scenario's ``data`` block: the dataset, how sensors see it, and their settings."""

    model_config = ConfigDict(extra="forbid")

    dataset: Annotated[str, AfterValidator(DATASETS.check)] = "digits"
    views: Annotated[str, AfterValidator(VIEWS.check)] = "split"
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    snr_db: float | list[float] = 10.0
    n_samples: int = Field(default=5000, gt=0)
    n_features: int = Field(default=64, gt=0)
    n_classes: int = Field(default=10, ge=2)
    class_sep: float = Field(default=2.0, gt=0)
    path: str | None = None
    limit: int | None = Field(default=None, gt=0)


@dataclass
class NodeInputs:
    """Per-sensor views (train, test) as tensors, the labels, and the dataset's shape."""

    views: dict[str, tuple[torch.Tensor, torch.Tensor]]
    labels: tuple[torch.Tensor, torch.Tensor]
    n_classes: int
    dataset: str

    @property
    def n_train(self) -> int:
        return len(self.labels[0])

    def view_dim(self, node: str) -> int | None:
        views = self.views.get(node)
        return int(views[0].shape[1]) if views is not None else None


def sensor_view_indices(topology: Topology) -> dict[str, int]:
    """The view index of each sensor: its ``view`` attribute, else its rank in node order."""
    indices = {}
    for rank, sensor in enumerate(topology.sensors):
        view = topology.graph.nodes[sensor].get("view")
        indices[sensor] = int(view) if view is not None else rank
    return indices


def _digits(config: DataConfig, seed: int) -> Dataset:
    return load_digits_dataset(seed=seed, test_fraction=config.test_fraction)


def _gaussian_mixture(config: DataConfig, seed: int) -> Dataset:
    return make_gaussian_mixture(
        n_samples=config.n_samples,
        n_features=config.n_features,
        n_classes=config.n_classes,
        seed=seed,
        test_fraction=config.test_fraction,
        class_sep=config.class_sep,
    )


def _idx(config: DataConfig, seed: int) -> Dataset:
    if config.path is None:
        raise FieldError(("data", "path"), "the idx dataset needs a directory of IDX files")
    return load_idx_dataset(
        config.path, seed=seed, test_fraction=config.test_fraction, limit=config.limit
    )


DATASETS.register("digits", DataChoice(_digits))
DATASETS.register(
    "gaussian_mixture",
    DataChoice(_gaussian_mixture, ("n_samples", "n_features", "n_classes", "class_sep")),
)
DATASETS.register("idx", DataChoice(_idx, ("path", "limit")))


def _split_blocks(config: DataConfig, dataset: Dataset, n_views: int, seed: int) -> tuple:
    if n_views > dataset.x_train.shape[1]:
        raise FieldError(
            ("data", "views"),
            f"{n_views} sensor views requested but the {dataset.name} data has only "
            f"{dataset.x_train.shape[1]} features to split",
        )
    return split_views(dataset.x_train, n_views), split_views(dataset.x_test, n_views)


def _noisy_blocks(config: DataConfig, dataset: Dataset, n_views: int, seed: int) -> tuple:
    snr = config.snr_db if isinstance(config.snr_db, list) else [config.snr_db] * n_views
    if len(snr) < n_views:
        raise FieldError(("data", "snr_db"), f"{len(snr)} values given for {n_views} views")
    return (
        noisy_views(dataset.x_train, snr[:n_views], seed=seed),
        noisy_views(dataset.x_test, snr[:n_views], seed=seed + 1_000_003),
    )


VIEWS.register("split", DataChoice(_split_blocks))
VIEWS.register("noisy", DataChoice(_noisy_blocks, ("snr_db",)))


def _check_noisy_views(config: DataConfig, indices: dict[str, int], topology: Topology) -> None:
    """With noisy views and one ``snr_db``, a view is one of the sensors' noisy copies.

    Each index makes a noisy copy of the whole data set, so a view beyond the
    number of sensors (``view: 99`` with 3 sensors) only costs memory and is
    most likely a slip; a list of ``snr_db`` values sets the number of views.
    """
    if config.views != "noisy" or isinstance(config.snr_db, list):
        return
    sensor, view = max(indices.items(), key=lambda item: item[1])
    if view >= len(indices):
        raise FieldError(
            ("data", "views"),
            f"topology {topology.name!r}: sensor {sensor} has view {view}, but with noisy views "
            f"and one snr_db the {len(indices)} sensors' views are 0..{len(indices) - 1} "
            "(give snr_db a list to have more views)",
        )


def load_inputs(config: DataConfig, topology: Topology, seed: int) -> NodeInputs:
    """Load the dataset for ``seed`` and cut it into the sensors' views.

    Problems with the data block raise :class:`~innet.core.yamlio.FieldError` with the
    path of the field in the scenario (e.g. ``("data", "views")``).
    """
    dataset = DATASETS.get(config.dataset).make(config, seed)
    indices = sensor_view_indices(topology)
    n_views = max(indices.values()) + 1
    _check_noisy_views(config, indices, topology)
    train_blocks, test_blocks = VIEWS.get(config.views).make(config, dataset, n_views, seed)
    views = {
        sensor: (
            torch.as_tensor(np.ascontiguousarray(train_blocks[index]), dtype=torch.float32),
            torch.as_tensor(np.ascontiguousarray(test_blocks[index]), dtype=torch.float32),
        )
        for sensor, index in indices.items()
    }
    labels = (
        torch.as_tensor(dataset.y_train, dtype=torch.int64),
        torch.as_tensor(dataset.y_test, dtype=torch.int64),
    )
    return NodeInputs(views=views, labels=labels, n_classes=dataset.n_classes, dataset=dataset.name)
