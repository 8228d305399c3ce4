#!/usr/bin/env python
"""How block-diagonal is the loss Hessian of a pruned MLP? The CRESPR paper's argument, measured.

    python scripts/crespr_hessian.py CRESPR_RUN BASELINE_RUN [--samples 2048] [--probes 16]

Both are finished ``prunekit train`` runs of an MLP on the same data, the first with method=crespr, the second
e.g. with method=magnitude at the same density.
For each network, over its surviving weights only (the Hessian of the mean training cross-entropy, on ``--samples``
training samples drawn with seed 0, in eval mode), the weights are split into blocks and a set of weights
crossing them, and the script estimates the share of the Hessian's squared Frobenius mass that lies off the
diagonal blocks:

    off = 1 - sum_b ||H_bb||^2 / ||H||^2

with block-indicator probes: for a Rademacher vector z on block b (zero elsewhere), E||(Hz)_b||^2 = ||H_bb||^2
and E||Hz||^2 = ||H_:b||^2, by Hessian-vector products (prunekit.pruning.hessian, torch.func). Two partitions:
``modules``, crespr's own modules (the crespr run's clusters and K, applied to both networks), and ``louvain``,
each network's own Louvain communities (prunekit.explain.modularity) with a weight in community c when both
its ends are. The second run may be any baseline; the last line is ``off_block_crespr=<a> off_block_<baseline>=<b>``
(e.g. off_block_magnitude) for the modules partition.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import torch
from omegaconf import OmegaConf

from prunekit.data.registry import load_dataset
from prunekit.data.view import DataView
from prunekit.errors import UserError, run_script
from prunekit.explain.command import load_pruned
from prunekit.explain.graph import surviving_network
from prunekit.explain.modularity import weighted_graph
from prunekit.layers import eval_mode, is_mlp, prunable_layers
from prunekit.pruning.clusters import feature_clusters
from prunekit.pruning.hessian import batched_hessian_vector_products, probe_chunks, rademacher_like
from prunekit.pruning.modules import CROSS, weight_modules
from prunekit.rundir import RunDir


def louvain_blocks(model, n_inputs: int) -> dict[str, torch.Tensor]:
    """The Louvain community of every weight whose two ends share one (else CROSS), layer name -> tensor."""
    net = surviving_network(model, n_inputs)
    graph = weighted_graph(net)
    label = {}
    for index, community in enumerate(nx.community.louvain_communities(graph, weight="weight", seed=0)):
        label.update({node: index for node in community})
    blocks = {}
    for k, (name, layer) in enumerate(prunable_layers(model)):
        rows, cols = layer.weight.shape
        source = torch.tensor([label.get((k, i), -2 - i) for i in range(cols)])
        target = torch.tensor([label.get((k + 1, j), -2 - cols - j) for j in range(rows)])
        blocks[name] = torch.where(target[:, None] == source[None, :], target[:, None], CROSS)
    return blocks


def off_block_mass(model, blocks: dict[str, torch.Tensor], x, y, probes: int) -> float:
    """1 - (mass of the diagonal blocks) / (whole mass) of the Hessian over the model's non-zero weights."""
    names = {id(m): n for n, m in model.named_modules()}
    layers = dict(prunable_layers(model))
    keys = {name: f"{names[id(layer)]}.weight" for name, layer in layers.items()}
    weights = {keys[n]: layer.weight.detach() for n, layer in layers.items()}
    alive = {keys[n]: layer.weight.detach() != 0 for n, layer in layers.items()}
    block_of = {keys[n]: blocks[n] for n in layers}
    generator = torch.Generator().manual_seed(0)
    labels = sorted({int(b) for t in blocks.values() for b in t.unique().tolist()})
    inside = whole = 0.0
    with eval_mode(model), torch.no_grad():  # torch.func's transforms differentiate all the same
        for label in labels:
            members = {k: alive[k] & (block_of[k] == label) for k in weights}
            if not any(bool(m.any()) for m in members.values()):
                continue
            for count in probe_chunks(weights, probes):
                z = {k: rademacher_like(w.expand(count, *w.shape), generator) * members[k] for k, w in weights.items()}
                hz = batched_hessian_vector_products(model, weights, z, x, y)
                whole += sum(float((v * alive[k]).square().sum()) for k, v in hz.items())
                if label != CROSS:
                    inside += sum(float((v * members[k]).square().sum()) for k, v in hz.items())
    return 1.0 - inside / whole if whole else float("nan")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("crespr_run", type=Path)
    parser.add_argument("magnitude_run", type=Path)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--probes", type=int, default=16)
    args = parser.parse_args(argv)
    runs = {"crespr": load_pruned(RunDir(args.crespr_run)), "magnitude": load_pruned(RunDir(args.magnitude_run))}
    crespr_cfg = OmegaConf.create(runs["crespr"][1]["config"])
    if crespr_cfg.method.name != "crespr" or not all(is_mlp(model) for model, _ in runs.values()):
        raise UserError("give a crespr run, then a baseline's run (e.g. magnitude), both of an MLP")
    baseline = runs["magnitude"][1]["config"]["method"]["name"]
    dataset = load_dataset(crespr_cfg.data, torch.device("cpu"), crespr_cfg.seed)
    shape = dataset.input_shape
    features = feature_clusters(crespr_cfg.method.cluster_by, crespr_cfg.method.clusters, dataset.train.x, shape,
                                crespr_cfg.seed)
    index = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(0))[:args.samples]
    x, y = next(iter(DataView(dataset).samples("train", index, args.samples)))
    result = {}
    for kind, (model, _) in runs.items():
        layers = dict(prunable_layers(model))
        weights = [m.weight for m in layers.values()]
        density = sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        modules = {n: t.cpu() for n, t in weight_modules(layers, crespr_cfg.method.clusters, features).items()}
        result[kind] = off_block_mass(model, modules, x, y, args.probes)
        louvain = off_block_mass(model, louvain_blocks(model, math.prod(shape)), x, y, args.probes)
        name = "crespr" if kind == "crespr" else baseline
        print(f"{name:9s} density {density:.4f}  off-block Hessian mass: crespr modules {result[kind]:.4f}, "
              f"its Louvain communities {louvain:.4f}", flush=True)
    print(f"off_block_crespr={result['crespr']:.4f} off_block_{baseline}={result['magnitude']:.4f}")
    return result


if __name__ == "__main__":
    run_script(main)
