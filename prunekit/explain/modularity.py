"""How modular a pruned MLP is: Newman's modularity Q of its surviving network as a weighted graph.

The nodes are the alive units (input features, hidden units, classes), the edges the alive weights with
|w| as their weight, taken as undirected. Communities come from the Louvain method (networkx, seeded), so
Q measures the structure the network has, whatever partition a method meant to impose: a perfectly
modular network of K equal disconnected blocks has Q = 1 - 1/K, a random one Q near 0. The CRESPR paper's
claim (DESIGN.md 2.4) is about this quantity; every MLP run reports it, so methods are compared alike.
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np

from prunekit.explain.graph import SurvivingNetwork, surviving_network
from prunekit.explain.registry import FinishedRun, register_measure


def weighted_graph(net: SurvivingNetwork) -> nx.Graph:
    """The surviving network as an undirected graph: node (layer, unit), edge weight |w|."""
    graph = nx.Graph()
    for layer in range(len(net.weights)):
        source, target, weight = net.edges(layer)
        graph.add_weighted_edges_from(
            ((layer, int(s)), (layer + 1, int(t)), float(abs(w))) for s, t, w in zip(source, target, weight))
    return graph


def modularity(net: SurvivingNetwork, seed: int = 0) -> float | None:
    """Q of the Louvain communities of the surviving network (None when no weight survives)."""
    graph = weighted_graph(net)
    if graph.number_of_edges() == 0:
        return None
    communities = nx.community.louvain_communities(graph, weight="weight", seed=seed)
    return float(nx.community.modularity(graph, communities, weight="weight"))


@register_measure("modularity_q", applies=lambda run: run.is_mlp,
                  description="Newman's Q of an MLP's surviving network (Louvain communities)")
def modularity_q(run: FinishedRun) -> dict:
    """``modularity_q`` of every MLP run, so that every method is measured alike."""
    return {"modularity_q": modularity(surviving_network(run.model, math.prod(run.input_shape)))}


def partition_modularity(net: SurvivingNetwork, labels: list[np.ndarray]) -> float | None:
    """Q of a given partition of the surviving network: ``labels[j][u]`` is the community of unit u of unit
    layer j (input features first, classes last), as in :class:`SurvivingNetwork`; None when no weight survives."""
    graph = weighted_graph(net)
    if graph.number_of_edges() == 0:
        return None
    communities: dict[int, set] = {}
    for node in graph.nodes:
        communities.setdefault(int(labels[node[0]][node[1]]), set()).add(node)
    return float(nx.community.modularity(graph, list(communities.values()), weight="weight"))


def block_diagonal_layers(widths: list[int], blocks: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Weight matrices (out x in) of a chain of ``widths`` cut into ``blocks`` equal disconnected modules: the
    perfectly modular network the tests compare against."""
    layers = []
    for n_in, n_out in zip(widths, widths[1:]):
        mask = np.zeros((n_out, n_in))
        for b in range(blocks):
            mask[b * n_out // blocks:(b + 1) * n_out // blocks, b * n_in // blocks:(b + 1) * n_in // blocks] = 1
        layers.append(mask * rng.uniform(0.5, 1.5, size=mask.shape))
    return layers
