"""Modularity Q of a pruned MLP's surviving network: the values the definition fixes, and every MLP run has it."""
import networkx as nx
import numpy as np
import pytest

from prunekit.explain.graph import SurvivingNetwork
from prunekit.explain.modularity import block_diagonal_layers, modularity, weighted_graph
from tests.conftest import read_summary

WIDTHS = [16, 12, 8, 4]


def _net(layers):
    return SurvivingNetwork(layers, [np.ones(width, bool) for width in WIDTHS])


@pytest.mark.parametrize("blocks", [2, 4])
def test_a_perfectly_modular_network_has_q_of_one_minus_one_over_k(blocks):
    net = _net(block_diagonal_layers(WIDTHS, blocks, np.random.default_rng(0)))
    assert modularity(net) == pytest.approx(1 - 1 / blocks, abs=1e-3)
    # the same value as networkx's modularity of the known partition into blocks
    graph = weighted_graph(net)
    partition = [{node for node in graph if node[1] * blocks // WIDTHS[node[0]] == b} for b in range(blocks)]
    assert modularity(net) == pytest.approx(nx.community.modularity(graph, partition, weight="weight"), abs=1e-3)


def test_a_dense_random_network_has_q_near_zero_and_an_empty_one_none():
    rng = np.random.default_rng(1)
    layers = [rng.uniform(0.5, 1.5, (n_out, n_in)) for n_in, n_out in zip(WIDTHS, WIDTHS[1:])]
    assert abs(modularity(_net(layers))) < 0.15
    assert modularity(_net([np.zeros_like(layer) for layer in layers])) is None


@pytest.mark.slow
def test_every_mlp_run_reports_its_modularity_even_without_figures(cli, tmp_path):
    code, _, err = cli("train", "model.hidden=[32,16]", "train.epochs=2", "prune.epochs=1", "finetune.epochs=0",
                       "method.sparsity=0.95", "latency=false", "figures=false", "hydra.run.dir=run")
    assert code == 0, err
    assert 0.0 < read_summary(tmp_path / "run")["modularity_q"] < 1.0
