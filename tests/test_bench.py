"""Smoke test of scripts/bench_train.py: its functions run end to end on tiny data. Nothing about speed."""
from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from prunekit.engine import build_optimizer

CPU = torch.device("cpu")
IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_train")


pytestmark = pytest.mark.usefixtures("one_thread")


def write_fashion_mnist(folder: Path, n_train: int = 96, n_test: int = 32) -> None:
    """The four gzipped IDX files, as Debian's dataset-fashion-mnist lays them out."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10]
    for name, array in zip(IDX_NAMES, arrays):
        payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        (folder / f"{name}.gz").write_bytes(gzip.compress(payload + array.astype(np.uint8).tobytes()))


@pytest.mark.slow
def test_functions_on_digits(bench):
    data, _ = bench.load_prunekit_data("digits", "unused", CPU)
    opt_cfg = bench.optim_config(batch_size=64, epochs=1)
    model = bench.prunekit_model(data, 0, CPU)
    reference = bench.reference_model(64, [300, 100], 10, 0, CPU)
    assert bench.same_weights(model, reference)

    bench.warm_up_prunekit(model, data, opt_cfg, batches=2)
    assert bench.same_weights(model, reference)  # the warm-up trains a copy
    seconds = bench.train_prunekit(model, data, opt_cfg, seed=0)
    assert len(seconds) == 1

    x = (data.train.x.float() / 255 - data.mean) / data.std
    dataset = torch.utils.data.TensorDataset(x, data.train.y)
    bench.warm_up_reference(reference, dataset, opt_cfg, batches=2)
    assert len(bench.train_reference(reference, dataset, opt_cfg, seed=0)) == 1
    assert 0.0 <= bench.evaluate_reference(reference, dataset) <= 1.0

    kinds = bench.step_kinds(model, data, opt_cfg, sparsity=0.9, seed=0)
    assert set(kinds) == {"dense", "masked", "masked_adam", "gumbel"}
    times = bench.compare_steps(kinds, steps=2, rounds=3, warmup=1, device=CPU)
    assert {name: len(values) for name, values in times.items()} == {name: 3 for name in kinds}


@pytest.mark.slow
def test_compared_loops_and_steps_use_the_same_optimiser(bench):
    data, _ = bench.load_prunekit_data("digits", "unused", CPU)
    opt_cfg = bench.optim_config(batch_size=64, epochs=1)
    model = bench.prunekit_model(data, 0, CPU)
    engine = build_optimizer([{"params": list(model.parameters())}], opt_cfg)
    reference = bench.reference_optimizer(model, opt_cfg)
    assert type(reference) is type(engine) is torch.optim.SGD
    assert reference.defaults == engine.defaults and reference.defaults["fused"]

    # gumbel is timed with its preset's optimiser, and against a masked step with that same optimiser
    preset = bench.gumbel_preset()
    assert preset.prune.optimizer == "adam"
    kinds = bench.step_kinds(model, data, opt_cfg, sparsity=0.9, seed=0)
    gumbel, masked = kinds["gumbel"].optimizer, kinds["masked_adam"].optimizer
    for optimizer in (gumbel, masked):
        assert type(optimizer) is torch.optim.Adam and optimizer.defaults["fused"]
        weights = optimizer.param_groups[0]
        assert (weights["lr"], weights["weight_decay"]) == (preset.prune.lr, preset.prune.weight_decay)
    assert len(masked.param_groups) == 1 and len(gumbel.param_groups) == 2
    gates = gumbel.param_groups[1]
    assert (gates["lr"], gates["weight_decay"]) == (preset.method.gate_lr, 0.0)
    gated = [p for p in gumbel.param_groups[0]["params"] if p.dim() > 1]  # one gate logit per weight
    assert [p.shape for p in gates["params"]] == [p.shape for p in gated]


def test_masked_step_keeps_pruned_weights_at_zero(bench):
    data, _ = bench.load_prunekit_data("digits", "unused", CPU)
    opt_cfg = bench.optim_config(batch_size=64, epochs=1)
    model = bench.prunekit_model(data, 0, CPU)
    step = bench.step_kinds(model, data, opt_cfg, sparsity=0.9, seed=0)["masked"]
    for _ in range(3):
        step()
    assert step.model is not model  # each kind trains its own copy
    weights = [m.weight for m in step.model.modules() if isinstance(m, torch.nn.Linear)]
    nonzero = sum(int(w.count_nonzero()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert nonzero == round(0.1 * total)


def test_main_on_tiny_idx_files(bench, tmp_path, capsys):
    write_fashion_mnist(tmp_path)
    result = bench.main(["--root", str(tmp_path), "--epochs", "1", "--batch-size", "32", "--device", "cpu",
                         "--steps", "2", "--rounds", "2", "--warmup-batches", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"speedup_vs_dataloader=\d+\.\d\dx masked_step_overhead=\d+\.\d\dx", lines[-1])
    assert lines[-1] == bench.summary_line(result["speedup"], result["overhead"])
    assert len(result["epochs_pk"]) == len(result["epochs_ref"]) == 1
