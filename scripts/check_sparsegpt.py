"""Compare prunekit's SparseGPT with the authors' reference code on the layers of one network.

    python3 scripts/check_sparsegpt.py PATH/TO/sparsegpt.py [--run RUN_DIR] [--samples 128]

PATH/TO/sparsegpt.py is the authors' file (github:IST-DASLab/sparsegpt); its imports of ``transformers`` and
``quant`` are stubbed (neither is used without quantisation or GPT-2 layers) and its ``torch.cuda.synchronize``
made a no-op, so it runs on a CPU. With ``--run``, the layers are those of the dense network of a finished
``prunekit train`` run (RUN_DIR/checkpoints/dense.pt) and their inputs those of ``--samples`` training samples;
without it, one random Linear layer on random inputs. Each layer's Hessian is accumulated by the authors'
``add_batch`` and the same matrix given to both; the weights after 50% unstructured and 2:4 pruning are compared
(max |difference|, and how many mask entries differ). The authors prune ``int(n * sparsity) + 1`` weights of every
block (``tmp <= thresh``); ours the block's share of the layer's count: ours is given the authors' count, and
blocks of equal width (the largest divisor of the columns up to 128) so that each block's count is the same.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import types
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.pruning.methods.sparsegpt import sparsegpt
from prunekit.pruning.patterns import Pattern


def authors_module(path: Path) -> types.ModuleType:
    """The authors' sparsegpt.py, imported with its unused dependencies stubbed."""
    sys.modules.setdefault("transformers", types.SimpleNamespace(Conv1D=type("Conv1D", (nn.Module,), {})))
    sys.modules.setdefault("quant", types.ModuleType("quant"))
    torch.cuda.synchronize = lambda *args, **kwargs: None
    spec = importlib.util.spec_from_file_location("authors_sparsegpt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def layers_and_inputs(run: Path | None, samples: int) -> list[tuple[str, nn.Linear, torch.Tensor]]:
    """(name, layer, its inputs [samples, features]) for every Linear layer of the run's dense network, or one
    random layer."""
    if run is None:
        torch.manual_seed(0)
        return [("random 64x256", nn.Linear(256, 64), torch.randn(samples, 256) @ torch.randn(256, 256))]
    from prunekit.data import load_dataset
    from prunekit.layers import prunable_layers
    from prunekit.models import build_model

    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    dataset = load_dataset(cfg.data, torch.device("cpu"), cfg.seed)
    model = build_model(cfg.model, dataset.input_shape, dataset.num_classes)
    model.load_state_dict(torch.load(run / "checkpoints" / "dense.pt", map_location="cpu"), strict=False)
    x = dataset.normalise(dataset.train.x[:samples])
    inputs = {}
    layers = prunable_layers(model)
    handles = [layer.register_forward_pre_hook(lambda m, a, name=name: inputs.__setitem__(name, a[0].flatten(1)))
               for name, layer in layers]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return [(name, layer, inputs[name]) for name, layer in layers]


def compare(authors: types.ModuleType, layer: nn.Linear, inputs: torch.Tensor, pattern: Pattern | None,
            block_size: int) -> tuple[float, int]:
    """Max |weight difference| and differing mask entries between the authors' fasterprune and ours."""
    theirs = authors.SparseGPT(nn.Linear(layer.in_features, layer.out_features).requires_grad_(False))
    theirs.layer.weight.copy_(layer.weight.detach())
    theirs.add_batch(inputs, None)
    hessian = theirs.H.clone()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its time and error
        theirs.fasterprune(0.5, prunen=(pattern.m - pattern.n) if pattern else 0, prunem=pattern.m if pattern else 0,
                           blocksize=block_size, percdamp=0.01)
    weight = layer.weight.detach().float()
    rows, columns = weight.shape
    keep = None if pattern else weight.numel() - (columns // block_size) * (int(rows * block_size * 0.5) + 1)
    ours, _ = sparsegpt(weight, hessian, torch.ones_like(weight, dtype=torch.bool), keep, pattern, block_size, 0.01)
    return float((ours - theirs.layer.weight).abs().max()), int(((ours == 0) != (theirs.layer.weight == 0)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("authors", type=Path, help="the authors' sparsegpt.py")
    parser.add_argument("--run", type=Path, help="a finished prunekit train run (its dense network)")
    parser.add_argument("--samples", type=int, default=128, help="calibration samples (the paper's 128)")
    args = parser.parse_args()
    authors = authors_module(args.authors)
    print("| layer | pattern | block | max abs weight difference | mask entries that differ |")
    print("|---|---|---|---|---|")
    for name, layer, inputs in layers_and_inputs(args.run, args.samples):
        columns = layer.in_features
        equal_blocks = max(b for b in range(1, 129) if columns % b == 0)
        for pattern, block_size in ((None, equal_blocks), (Pattern(2, 4), 128)):
            diff, masks = compare(authors, layer, inputs, pattern, block_size)
            print(f"| {name} {tuple(layer.weight.shape)} | {pattern or '50%'} | {block_size} | {diff:.2e} | {masks} |")


if __name__ == "__main__":
    main()
