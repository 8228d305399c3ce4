#!/usr/bin/env python
"""Benchmark prunekit's training path against a plain torchvision + DataLoader loop, and masked steps against dense.

    python scripts/bench_train.py                      # Fashion-MNIST from /usr/share/datasets/fashion-mnist
    python scripts/bench_train.py --device cuda --epochs 3 --steps 500

Part 1 trains the same MLP (prunekit's default ``mlp``: 784-300-100-10) on the same Fashion-MNIST training
images for the same number of epochs twice, in one process, on one device, with the same number of threads:

- prunekit: ``load_dataset`` (tensors on the device) + ``engine.train_epoch``;
- reference: ``torchvision.datasets.FashionMNIST`` over the same files (ToTensor + Normalize with prunekit's
  mean/std), ``torch.utils.data.DataLoader`` with default settings (``shuffle=True``, equal batch size) and
  a standard loop (forward, cross_entropy, zero_grad, backward, step).

Both start from the same initial weights (same seed), use the same optimiser, built by prunekit's
``build_optimizer`` (torch's fused SGD with prunekit's defaults: lr 0.05, momentum 0.9, weight decay 5e-4)
at a constant learning rate, and train on all 60,000 training images (prunekit's validation split is
switched off with ``val_fraction=0`` so that the two epochs hold the same samples).
Each side first runs a few warm-up batches on a throw-away copy of the model. Dataset loading is timed
separately and reported, but is not part of the epoch times. Test accuracy after training shows that both
loops learned the same thing.

Part 2 times one training step on a fixed batch: dense (no hooks) against masked (a ``MaskSet`` pruned to
``--sparsity`` by the magnitude method, with prunekit's real hooks ``before_step``/``after_step``), in
interleaved rounds; the median round of each kind counts. A method=gumbel step is timed with the optimiser
of experiment=gumbel_fashion_mnist (Adam), against a masked step with that same optimiser. Another step kind
(e.g. a training-time method's hooks) is one more entry in :func:`step_kinds`.

The last line printed is exactly ``speedup_vs_dataloader=<x>x masked_step_overhead=<y>x`` where speedup is
the reference epoch time over prunekit's and overhead is the masked step time over the dense one.

Timings are only meaningful on an otherwise idle machine. When other processes keep the cores busy, torch's
multi-threaded kernels stall at every parallel region waiting for a descheduled thread (a training step can
become 10-100 times slower); run it a few times and read the load average printed at the end, or compare
both sides on one thread each with ``--threads 1``, which suffers much less.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn

from prunekit.acceleration import PLAIN
from prunekit.config import DataConfig, MethodConfig, OptimConfig
from prunekit.models.mlp import MLPConfig
from prunekit.data import Dataset, Split, load_dataset
from prunekit.data.mnist import IdxSet
from prunekit.engine import TrainHook, build_optimizer, evaluate, train_epoch, train_step
from prunekit.errors import run_script
from prunekit.models import build_model
from prunekit.latency import synchronize
from prunekit.pipeline import resolve_device
from prunekit.stages.training import epoch_generator
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
EVAL_BATCH_SIZE = 1024
GUMBEL_PRESET = "gumbel_fashion_mnist"  # the gumbel step is timed with this preset's optimiser

StepFn = Callable[[], None]


# --- shared helpers -----------------------------------------------------------------------------------


def optim_config(batch_size: int, epochs: int) -> DictConfig:
    """prunekit's optimiser defaults (SGD, lr 0.05, momentum 0.9, weight decay 5e-4) at a constant rate,
    so that the reference loop, which has no schedule, runs exactly the same optimisation."""
    return OmegaConf.structured(OptimConfig(epochs=epochs, batch_size=batch_size, lr_schedule="constant"))


def data_config(name: str, root: str) -> DictConfig:
    """A data node with no validation split: prunekit trains on the same 60,000 images as torchvision."""
    return OmegaConf.structured(DataConfig(name=name, root=root, val_fraction=0.0))


def load_prunekit_data(name: str, root: str, device: torch.device) -> tuple[Dataset, float]:
    """prunekit's dataset on ``device`` and the seconds it took (files -> uint8 tensors on the device)."""
    began = time.perf_counter()
    data = load_dataset(data_config(name, root), device)
    synchronize(device)
    return data, time.perf_counter() - began


def prunekit_model(data: Dataset, seed: int, device: torch.device) -> nn.Module:
    """prunekit's default MLP (hidden 300-100) for ``data``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_model(OmegaConf.structured(MLPConfig(name="mlp")), data.input_shape, data.num_classes).to(device)


def reference_model(in_features: int, hidden: Sequence[int], num_classes: int, seed: int,
                    device: torch.device) -> nn.Module:
    """The same architecture written as a plain ``nn.Sequential``; the same seed gives the same weights."""
    torch.manual_seed(seed)
    sizes = [in_features, *hidden, num_classes]
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        layers[f"fc{k}"] = nn.Linear(n_in, n_out)
        if k < len(sizes) - 1:
            layers[f"relu{k}"] = nn.ReLU()
    return nn.Sequential(layers).to(device)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- part 1a: prunekit's engine -----------------------------------------------------------------------


def head(data: Dataset, samples: int) -> Dataset:
    """``data`` with its train split cut to the first ``samples`` images (for warm-up)."""
    return dataclasses.replace(data, train=Split(data.train.x[:samples], data.train.y[:samples]))


def warm_up_prunekit(model: nn.Module, data: Dataset, opt_cfg: DictConfig, batches: int) -> None:
    """A few batches through ``train_epoch`` on a throw-away copy of the model."""
    if batches <= 0:
        return
    scratch = copy.deepcopy(model)
    optimizer = build_optimizer([{"params": list(scratch.parameters())}], opt_cfg)
    train_epoch(scratch, head(data, batches * opt_cfg.batch_size), optimizer, opt_cfg, [],
                torch.Generator().manual_seed(0), 0, batches)
    synchronize(next(model.parameters()).device)


def train_prunekit(model: nn.Module, data: Dataset, opt_cfg: DictConfig, seed: int,
                   hooks: Sequence[TrainHook] = ()) -> list[float]:
    """``opt_cfg.epochs`` epochs of ``engine.train_epoch``, seeded as a real run's dense stage; seconds per epoch."""
    device = next(model.parameters()).device
    optimizer = build_optimizer([{"params": list(model.parameters())}], opt_cfg)
    total = opt_cfg.epochs * data.num_batches("train", opt_cfg.batch_size)
    step, seconds = 0, []
    for epoch in range(opt_cfg.epochs):
        synchronize(device)
        began = time.perf_counter()
        _, step = train_epoch(model, data, optimizer, opt_cfg, list(hooks), epoch_generator(seed, "dense", epoch),
                              step, total)
        synchronize(device)
        seconds.append(time.perf_counter() - began)
    return seconds


# --- part 1b: the reference, torchvision + DataLoader ---------------------------------------------------


def torchvision_fashion_mnist(root: str | Path, workdir: str | Path, mean: float, std: float):
    """torchvision's FashionMNIST train and test sets over the IDX files in ``root`` (plain folder or
    torchvision layout), transform ``ToTensor() + Normalize(mean, std)``; returns (train, test, seconds).

    torchvision wants ``<root>/FashionMNIST/raw/<name>`` uncompressed and, with ``download=False``, only
    checks that those exist (with ``download=True`` it would compare MD5 sums with the original archives,
    which Debian's recompressed files do not match, and go to the network). So the layout is built in
    ``workdir`` from symlinks and torchvision's own ``extract_archive`` unpacks the gzipped files there.
    """
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.utils import extract_archive

    began = time.perf_counter()
    found = IdxSet("fashion_mnist", "FashionMNIST", "").find(Path(root))
    if found is None:
        raise SystemExit(f"the four Fashion-MNIST IDX files are not in {root} (apt-get install dataset-fashion-mnist)")
    raw = Path(workdir) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for source in found.values():
        link = raw / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
        if link.suffix == ".gz" and not link.with_suffix("").exists():
            extract_archive(str(link), str(raw))
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    train = FashionMNIST(str(workdir), train=True, transform=transform, download=False)
    test = FashionMNIST(str(workdir), train=False, transform=transform, download=False)
    return train, test, time.perf_counter() - began


def reference_optimizer(model: nn.Module, opt_cfg: DictConfig) -> torch.optim.Optimizer:
    """The optimiser prunekit builds (torch's fused SGD): the speed-up must measure the loop, not the optimiser."""
    return build_optimizer([{"params": list(model.parameters())}], opt_cfg)


def reference_pass(model: nn.Module, optimizer: torch.optim.Optimizer, loader, device: torch.device,
                   max_batches: int | None = None) -> None:
    """The standard loop over ``loader``: forward, cross_entropy, zero_grad, backward, step."""
    model.train()
    for index, (x, y) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def warm_up_reference(model: nn.Module, dataset, opt_cfg: DictConfig, batches: int) -> None:
    """A few batches of the reference loop (DataLoader included) on a throw-away copy of the model."""
    if batches <= 0:
        return
    scratch = copy.deepcopy(model)
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=opt_cfg.batch_size, shuffle=True)
    reference_pass(scratch, reference_optimizer(scratch, opt_cfg), loader, device, batches)
    synchronize(device)


def train_reference(model: nn.Module, dataset, opt_cfg: DictConfig, seed: int) -> list[float]:
    """``opt_cfg.epochs`` epochs of the reference loop with a default DataLoader; seconds per epoch."""
    device = next(model.parameters()).device
    torch.manual_seed(seed)  # the DataLoader's shuffling draws from the default generator
    loader = torch.utils.data.DataLoader(dataset, batch_size=opt_cfg.batch_size, shuffle=True)
    optimizer = reference_optimizer(model, opt_cfg)
    seconds = []
    for _ in range(opt_cfg.epochs):
        synchronize(device)
        began = time.perf_counter()
        reference_pass(model, optimizer, loader, device)
        synchronize(device)
        seconds.append(time.perf_counter() - began)
    return seconds


@torch.no_grad()
def evaluate_reference(model: nn.Module, dataset, batch_size: int = EVAL_BATCH_SIZE) -> float:
    """Top-1 accuracy over ``dataset`` through a DataLoader (not timed)."""
    model.eval()
    device = next(model.parameters()).device
    correct, seen = 0, 0
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
        seen += len(y)
    return correct / max(seen, 1)


# --- part 2: one training step, dense against masked ----------------------------------------------------


def fixed_batch(data: Dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch in file order, normalised on the device as prunekit feeds it."""
    return next(iter(data.batches("train", batch_size, shuffle=False, augment=False)))


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    hooks: Sequence[TrainHook] = ()) -> StepFn:
    """One optimiser step on the batch ``(x, y)``, with the hooks called where ``engine.train_epoch`` calls them."""
    hooks = list(hooks)
    counter = [0]
    model.train()
    accelerated = PLAIN.bind(model)  # once, as train_epoch does: not again in every timed step

    def step() -> None:
        counter[0] += 1
        train_step(model, optimizer, x, y, hooks, counter[0], accelerated)

    step.model, step.optimizer, step.hooks = model, optimizer, hooks  # for inspection
    return step


def gumbel_preset(name: str = GUMBEL_PRESET) -> DictConfig:
    """The composed run config of ``experiment=<name>`` (its ``prune`` node is the optimiser gumbel trains with)."""
    from hydra import compose, initialize_config_dir

    from prunekit.config import config_dir, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose("train", overrides=[f"experiment={name}"])


def masked_step(model: nn.Module, data: Dataset, opt_cfg: DictConfig, sparsity: float, seed: int,
                batch: tuple[torch.Tensor, torch.Tensor]) -> StepFn:
    """A step of a copy of ``model`` whose MaskSet is pruned to ``sparsity`` (global magnitude)."""
    masked = copy.deepcopy(model)
    masks = MaskSet(masked)
    method_cfg = OmegaConf.structured(MethodConfig(name="magnitude", sparsity=sparsity))
    get_method_class("magnitude")(method_cfg, masked, masks, data, seed).prune(sparsity)
    return make_train_step(masked, build_optimizer([{"params": list(masked.parameters())}], opt_cfg), *batch, [masks])


def step_kinds(model: nn.Module, data: Dataset, opt_cfg: DictConfig, sparsity: float, seed: int) -> dict[str, StepFn]:
    """The step functions to compare, each on its own copy of ``model`` and its own optimiser.

    ``dense`` has no hooks; ``masked`` has a MaskSet at ``sparsity`` (global magnitude pruning); both use
    ``opt_cfg``. ``gumbel`` is a pruning-stage step of method=gumbel (sampled gates, density term, gate
    logits in the optimiser), with its hooks then the MaskSet, as in the pipeline, and with the optimiser
    of :data:`GUMBEL_PRESET` (Adam, no weight decay, ``method.gate_lr`` on the logits); ``masked_adam`` is
    the masked step with that same optimiser, which the gumbel step is compared with.
    """
    batch = fixed_batch(data, opt_cfg.batch_size)
    dense = copy.deepcopy(model)
    kinds = {"dense": make_train_step(dense, build_optimizer([{"params": list(dense.parameters())}], opt_cfg), *batch),
             "masked": masked_step(model, data, opt_cfg, sparsity, seed, batch)}

    preset = gumbel_preset()
    gumbel_opt = OmegaConf.merge(preset.prune, {"batch_size": opt_cfg.batch_size})
    kinds["masked_adam"] = masked_step(model, data, gumbel_opt, sparsity, seed, batch)
    gated = copy.deepcopy(model)
    gate_masks = MaskSet(gated)
    gumbel = get_method_class("gumbel")(preset.method, gated, gate_masks, data, seed)
    gumbel.start()
    optimizer = build_optimizer([{"params": list(gated.parameters())}, *gumbel.param_groups(gumbel_opt.lr)],
                                gumbel_opt)
    kinds["gumbel"] = make_train_step(gated, optimizer, *batch, [gumbel, gate_masks])
    return kinds


def time_steps(step_fn: StepFn, steps: int, device: torch.device) -> float:
    """Milliseconds per call of ``step_fn`` over ``steps`` calls (the device synchronised at both ends)."""
    synchronize(device)
    began = time.perf_counter()
    for _ in range(steps):
        step_fn()
    synchronize(device)
    return (time.perf_counter() - began) * 1000 / steps


def compare_steps(kinds: dict[str, StepFn], steps: int, rounds: int, warmup: int,
                  device: torch.device) -> dict[str, list[float]]:
    """ms per step of every kind, ``rounds`` times, the kinds interleaved to share the machine's noise.

    Each kind first runs ``warmup`` untimed steps; the order of the kinds is reversed every other round, so
    no kind always runs right after another one.
    """
    for step_fn in kinds.values():
        time_steps(step_fn, warmup, device)
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for index in range(rounds):
        order = list(kinds) if index % 2 == 0 else list(reversed(kinds))
        for name in order:
            times[name].append(time_steps(kinds[name], steps, device))
    return times


# --- the report ------------------------------------------------------------------------------------------


def summary_line(speedup: float, overhead: float) -> str:
    """The last line: ``speedup_vs_dataloader=<x>x masked_step_overhead=<y>x``."""
    return f"speedup_vs_dataloader={speedup:.2f}x masked_step_overhead={overhead:.2f}x"


def render(r: dict, console: Console) -> None:
    """Two tables: the training comparison, then the step timings (every kind against dense)."""
    train = Table(title=r["title"], title_justify="left")
    train.add_column("training")
    train.add_column("prunekit", justify="right")
    train.add_column("DataLoader", justify="right")
    train.add_column("ratio", justify="right")
    train.add_row("data load s (excluded)", f"{r['load_pk']:.2f}", f"{r['load_ref']:.2f}", "")
    train.add_row("epoch s, each", ", ".join(f"{v:.2f}" for v in r["epochs_pk"]),
                  ", ".join(f"{v:.2f}" for v in r["epochs_ref"]), "")
    train.add_row("epoch s, mean", f"{r['epoch_pk']:.3f}", f"{r['epoch_ref']:.3f}", f"[bold]{r['speedup']:.2f}x[/bold]")
    train.add_row("samples/s", f"{r['samples_pk']:,.0f}", f"{r['samples_ref']:,.0f}", "")
    train.add_row("test accuracy", f"{r['acc_pk']:.4f}", f"{r['acc_ref']:.4f}", f"{r['acc_pk'] - r['acc_ref']:+.4f}")
    console.print(train)

    steps = r["steps"]
    dense = statistics.median(steps["dense"])
    table = Table(title=f"one training step, {r['step_setup']}", title_justify="left")
    table.add_column("step")
    table.add_column("median ms", justify="right")
    table.add_column("min ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_column("vs dense", justify="right")
    for name, values in steps.items():
        median = statistics.median(values)
        table.add_row(name, f"{median:.3f}", f"{min(values):.3f}", f"{max(values):.3f}",
                      f"[bold]{median / dense:.2f}x[/bold]")
    console.print(table)
    console.print(r["notes"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--root", default=DEFAULT_ROOT,
                        help="Fashion-MNIST IDX files (plain folder or torchvision layout)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=200, help="steps per timed round of the step comparison")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the step comparison (median)")
    parser.add_argument("--warmup-batches", type=int, default=10, help="untimed batches before each timing")
    parser.add_argument("--sparsity", type=float, default=0.9, help="weight sparsity of the masked step")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads for both (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    opt_cfg = optim_config(args.batch_size, args.epochs)
    console = Console()
    load_before = os.getloadavg()[0]

    # Part 1a: prunekit. Loading (read, decompress, move to the device, statistics) is timed on its own.
    data, load_pk = load_prunekit_data("fashion_mnist", args.root, device)
    model_pk = prunekit_model(data, args.seed, device)
    hidden = [m.out_features for m in model_pk.modules() if isinstance(m, nn.Linear)][:-1]
    model_ref = reference_model(model_pk.fc1.in_features, hidden, data.num_classes, args.seed, device)
    if not same_weights(model_pk, model_ref):
        raise SystemExit("the reference model does not start from prunekit's initial weights")
    warm_up_prunekit(model_pk, data, opt_cfg, args.warmup_batches)
    epochs_pk = train_prunekit(model_pk, data, opt_cfg, args.seed)
    acc_pk = evaluate(model_pk, data, "test", EVAL_BATCH_SIZE)["accuracy"]

    # Part 1b: the reference on the same files, with prunekit's normalisation statistics.
    with tempfile.TemporaryDirectory(prefix="bench_fmnist_") as workdir:
        train_ref, test_ref, load_ref = torchvision_fashion_mnist(
            args.root, workdir, float(data.mean.flatten()[0]), float(data.std.flatten()[0]))
        if len(train_ref) != len(data.train):
            raise SystemExit(f"torchvision holds {len(train_ref)} training images, prunekit {len(data.train)}")
        warm_up_reference(model_ref, train_ref, opt_cfg, args.warmup_batches)
        epochs_ref = train_reference(model_ref, train_ref, opt_cfg, args.seed)
        acc_ref = evaluate_reference(model_ref, test_ref)

    # Part 2: a training step, dense against masked, on the trained weights.
    steps = compare_steps(step_kinds(model_pk, data, opt_cfg, args.sparsity, args.seed), args.steps, args.rounds,
                          args.warmup_batches * 2, device)

    epoch_pk, epoch_ref = statistics.fmean(epochs_pk), statistics.fmean(epochs_ref)
    n = len(data.train)
    result = {
        "title": f"Fashion-MNIST ({n:,} training images), MLP {model_pk.fc1.in_features}-"
                 f"{'-'.join(map(str, hidden))}-{data.num_classes}, {args.epochs} epoch(s), batch {args.batch_size}",
        "step_setup": f"{args.rounds} interleaved rounds of {args.steps} steps, batch {args.batch_size}",
        "load_pk": load_pk, "load_ref": load_ref,
        "epochs_pk": epochs_pk, "epochs_ref": epochs_ref, "epoch_pk": epoch_pk, "epoch_ref": epoch_ref,
        "samples_pk": n / epoch_pk, "samples_ref": n / epoch_ref,
        "acc_pk": acc_pk, "acc_ref": acc_ref, "steps": steps,
        "speedup": epoch_ref / epoch_pk,
        "overhead": statistics.median(steps["masked"]) / statistics.median(steps["dense"]),
        "gumbel": statistics.median(steps["gumbel"]) / statistics.median(steps["masked_adam"]),
    }
    result["notes"] = (
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) for both; DataLoader with default "
        f"settings (num_workers=0); fused SGD lr {opt_cfg.lr} momentum {opt_cfg.momentum} weight decay "
        f"{opt_cfg.weight_decay}, constant rate, for both; {args.warmup_batches} warm-up batches each, untimed. "
        f"Epoch times exclude dataset loading and evaluation. Steps: one fixed batch, trained weights; masked = "
        f"MaskSet at {args.sparsity:.0%} weight sparsity (global magnitude), before_step/after_step around "
        f"optimizer.step(); masked_adam and gumbel use {GUMBEL_PRESET}'s optimiser (fused Adam, gates at "
        f"method.gate_lr); gumbel_step_vs_masked is gumbel over masked_adam; ratios use the medians. "
        f"Load average (1 min) {load_before:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end, on {os.cpu_count()} CPU(s): other work on the machine skews all of this."
    )
    render(result, console)
    # issue 3's figure goes on its own line: the last line keeps exactly the two ratios of issue 2
    print(f"gumbel_step_vs_masked={result['gumbel']:.2f}x", flush=True)
    print(summary_line(result["speedup"], result["overhead"]), flush=True)
    return result


if __name__ == "__main__":
    run_script(main)
