"""CARL's dual-level load balancing: expert and group biases driven by the observed skew.

CARL selects experts by the utility ``score_e - b_e - c_{g(e)}``: ``b`` is an
expert-level and ``c`` a group-level balance bias (no gradient; the gate
weights stay the router's probabilities). After each step, with the step's
tokens per expert ``n_e`` and per group ``m_g``:

    b_e += gamma_E * (n_e - mean n) / mean n
    c_g += gamma_G * (m_g - mean m) / mean m

**The controller** (``adaptive``): the coefficients follow the observed skew,
``gamma_E = gamma0 * min(MaxVio_E / target_E, ratio_max)`` and likewise
``gamma_G`` with ``MaxVio_G / target_G``: large steps while the load is far
from the target, small ones near it (so it does not oscillate around
balance). ``fixed``: ``gamma_E = gamma_G = gamma0`` throughout; ``off``: no
balancing (the biases stay 0).

>>> c = BalanceController(4, np.array([0, 0, 1, 1]), mode="fixed", gamma=0.5)
>>> c.update(np.array([6, 2, 2, 2]))
>>> c.expert_bias.round(3).tolist(), c.group_bias.round(3).tolist()
([0.5, -0.167, -0.167, -0.167], [0.167, -0.167])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from innet.core.registry import Registry
from innet.families.moe.metrics import group_loads, max_vio

__all__ = ["BALANCE_MODES", "BalanceController"]

BALANCE_MODES: Registry[str] = Registry("balance")
"""The controller's modes, each with a one-line description (see the module docstring)."""
BALANCE_MODES.register("adaptive", "coefficients follow the observed skew")
BALANCE_MODES.register("fixed", "coefficients gamma0 throughout")
BALANCE_MODES.register("off", "no balancing")


@dataclass
class BalanceController:
    """The biases of :mod:`this module <innet.families.moe.balance>` and their controller."""

    experts: int
    group_of: np.ndarray
    mode: str = "adaptive"
    gamma: float = 0.05
    target_expert: float = 0.2
    target_group: float = 0.1
    ratio_max: float = 4.0
    expert_bias: np.ndarray = field(init=False)
    group_bias: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.groups = int(self.group_of.max()) + 1
        self.expert_bias = np.zeros(self.experts)
        self.group_bias = np.zeros(self.groups)

    def bias(self) -> np.ndarray:
        """Per expert, what is subtracted from its score: ``b_e + c_{g(e)}``."""
        return self.expert_bias + self.group_bias[self.group_of]

    def coefficients(self, counts: np.ndarray) -> tuple[float, float]:
        """``(gamma_E, gamma_G)`` for a step with ``counts`` tokens per expert."""
        if self.mode == "off":
            return 0.0, 0.0
        if self.mode == "fixed":
            return self.gamma, self.gamma
        groups = self._group_loads(counts)
        return (
            self.gamma * min(max_vio(counts) / self.target_expert, self.ratio_max),
            self.gamma * min(max_vio(groups) / self.target_group, self.ratio_max),
        )

    def _group_loads(self, counts: np.ndarray) -> np.ndarray:
        """Tokens per expert of each group that holds experts."""
        sizes = np.bincount(self.group_of, minlength=self.groups)
        present = sizes > 0
        return group_loads(counts, self.group_of, self.groups)[present] / sizes[present]

    def update(self, counts: np.ndarray) -> None:
        """Move the biases after a step that sent ``counts`` tokens to each expert."""
        counts = np.asarray(counts, dtype=float)
        if counts.sum() == 0:
            return
        gamma_e, gamma_g = self.coefficients(counts)
        groups = self._group_loads(counts)
        self.expert_bias = self.expert_bias + gamma_e * (counts - counts.mean()) / counts.mean()
        step = np.zeros(self.groups)
        step[np.bincount(self.group_of, minlength=self.groups) > 0] = (
            gamma_g * (groups - groups.mean()) / groups.mean()
        )
        self.group_bias = self.group_bias + step
