"""The surviving network of a pruned MLP: the weights that lie on some path from an input to a class.

A non-zero weight can still be useless: a hidden unit whose incoming weights are all pruned carries no
information from the input (only its bias), and one whose outgoing weights are all pruned reaches no
class. Such units are dead, and so is every weight touching them. Liveness is decided by forward
reachability from the inputs and backward reachability from the classes through boolean matrices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from prunekit.errors import UserError


@dataclass(frozen=True)
class SurvivingNetwork:
    """Alive weights and units of an MLP.

    ``weights[k]`` is layer k's weight matrix (out x in, float64) with every weight that is not alive set
    to 0. ``alive[j]`` is a boolean mask over the units of unit layer j: j = 0 are the input features,
    the last are the classes, and the ones between are hidden layers; so ``len(alive) == len(weights) + 1``.
    """

    weights: list[np.ndarray]
    alive: list[np.ndarray]

    @property
    def alive_counts(self) -> list[int]:
        """Number of alive units per unit layer, input features and classes included."""
        return [int(mask.sum()) for mask in self.alive]

    @property
    def weight_count(self) -> int:
        """Number of alive weights in the whole network."""
        return int(sum(np.count_nonzero(w) for w in self.weights))

    def edges(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Alive weights of Linear layer ``layer`` as (source unit, target unit, weight) arrays."""
        target, source = np.nonzero(self.weights[layer])
        return source, target, self.weights[layer][target, source]


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The model's Linear layers in forward order, checked to form a chain (each reads the last's output)."""
    layers = [m for _, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise UserError(f"explain needs an MLP, but {type(model).__name__} has no nn.Linear layer")
    for before, after in zip(layers, layers[1:]):
        if after.in_features != before.out_features:
            raise UserError(
                "explain needs an MLP whose Linear layers form a chain, but a layer with "
                f"{before.out_features} outputs is followed by one with {after.in_features} inputs")
    return layers


def surviving_network(model: nn.Module, n_inputs: int) -> SurvivingNetwork:
    """Extract the surviving network of ``model``, whose first Linear layer reads ``n_inputs`` features."""
    layers = linear_layers(model)
    if layers[0].in_features != n_inputs:
        raise UserError(f"the first Linear layer reads {layers[0].in_features} features, but the input "
                        f"shape has {n_inputs}")
    weights = [layer.weight.detach().cpu().double().numpy() for layer in layers]
    nonzero = [w != 0 for w in weights]

    # A unit is reached from the inputs if a non-zero weight joins it to a reached unit of the layer before.
    reached = [np.ones(n_inputs, dtype=bool)]
    for links in nonzero:
        reached.append((links & reached[-1][None, :]).any(axis=1))
    # Symmetrically, a unit reaches the classes if a non-zero weight joins it to such a unit after it.
    reaches = [np.ones(weights[-1].shape[0], dtype=bool)]
    for links in reversed(nonzero):
        reaches.insert(0, (links & reaches[0][:, None]).any(axis=0))

    alive = [r & s for r, s in zip(reached, reaches)]
    # A non-zero weight between two alive units lies on an input-to-class path, and only those do.
    alive_weights = [np.where(links & alive[k + 1][:, None] & alive[k][None, :], w, 0.0)
                     for k, (w, links) in enumerate(zip(weights, nonzero))]
    return SurvivingNetwork(weights=alive_weights, alive=alive)
