"""Vertical placement of the alive units of a surviving network, for drawing it as a layered graph.

Input features keep their natural order (raster order for images, so neighbouring pixels stay
together) and classes keep theirs (so they read 0..9 from top to bottom). Hidden units are ordered by
the barycentre heuristic of layered-graph drawing: each unit goes to the mean position of its alive
neighbours in the adjacent layers, which removes most needless edge crossings. One sweep forward
(neighbours = the unit's inputs), then one backward (neighbours = its inputs and outputs, so that the
final order reflects both sides and the classes' order propagates back).
"""
from __future__ import annotations

import numpy as np

from prunekit.explain.graph import SurvivingNetwork


def _spread(units: np.ndarray, size: int) -> np.ndarray:
    """Positions in (0, 1) for ``units`` in the given order, evenly spaced; NaN for absent units."""
    position = np.full(size, np.nan)
    position[units] = (np.arange(units.size) + 0.5) / max(units.size, 1)
    return position


def _barycentre_order(units: np.ndarray, links: np.ndarray, neighbour_position: np.ndarray) -> np.ndarray:
    """``units`` sorted by the mean position of the units ``links`` joins them to (stable for ties)."""
    joined = links[units].astype(float)
    # Dead neighbours have no links to alive units, so replacing their NaN position by 0 adds nothing.
    barycentre = joined @ np.nan_to_num(neighbour_position) / np.maximum(joined.sum(axis=1), 1.0)
    return units[np.argsort(barycentre, kind="stable")]


def unit_positions(net: SurvivingNetwork) -> list[np.ndarray]:
    """Per unit layer, the vertical position in (0, 1) of every alive unit (0 = top), NaN for dead ones."""
    order = [np.flatnonzero(mask) for mask in net.alive]
    sizes = [mask.size for mask in net.alive]
    positions = [_spread(units, size) for units, size in zip(order, sizes)]
    hidden = range(1, len(order) - 1)
    for layer in hidden:
        incoming = net.weights[layer - 1] != 0  # hidden units x previous layer
        order[layer] = _barycentre_order(order[layer], incoming, positions[layer - 1])
        positions[layer] = _spread(order[layer], sizes[layer])
    for layer in reversed(hidden):
        # Both sides: ordering by outputs alone would undo what the forward sweep did for the inputs.
        links = np.hstack([net.weights[layer - 1] != 0, (net.weights[layer] != 0).T])
        neighbours = np.concatenate([positions[layer - 1], positions[layer + 1]])
        order[layer] = _barycentre_order(order[layer], links, neighbours)
        positions[layer] = _spread(order[layer], sizes[layer])
    return positions
