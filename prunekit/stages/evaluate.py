"""The last stage: test accuracy (the only read of the test split), the efficiency figures at their three
levels, the registered measures and figures (prunekit/explain/registry.py, which `prunekit explain` calls too),
and the files a finished run leaves (pruned.pt, compact.pt, layers.csv, summary.json)."""
from __future__ import annotations

import time

from omegaconf import OmegaConf
from torch import nn

from prunekit import metrics
from prunekit.checkpoints import save_compact, save_pruned
from prunekit.distributed import world
from prunekit.engine import evaluate
from prunekit.explain.registry import FinishedRun, draw_figures, measures
from prunekit.layers import prunable_layers
from prunekit.latency import UNSTABLE_SPREAD, latency_table
from prunekit.models import weights
from prunekit.pruning.compaction import expand
from prunekit.pruning.methods import get_method_class
from prunekit.state import RunState


def _compact_figures(compact: nn.Module, input_shape: tuple[int, ...], rows: list[dict]) -> dict:
    """params_compact and flops_compact of the physically smaller network; adds its columns to ``rows``."""
    flops = metrics.flops_per_layer(compact, input_shape)
    layers = dict(prunable_layers(compact))
    for row in rows:
        layer = layers[row["layer"]]
        row["compact_shape"] = "x".join(str(d) for d in layer.weight.shape)
        row["params_compact"] = layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
        row["flops_compact"] = flops[row["layer"]]
    return {"params_compact": sum(p.numel() for p in compact.parameters()), "flops_compact": sum(flops.values())}


def _inputs_kept(state: RunState) -> dict:
    """How many input features (flattened pixels, or channels of a CNN) the compact network still reads, and
    which: ``inputs_kept_mask`` has one 0/1 entry per input feature of the dataset."""
    view = state.data
    entries = {"inputs_kept_fraction": view.fraction_kept}
    if view.kept is not None:
        kept = set(view.kept)
        entries.update(inputs_kept=len(kept), inputs_kept_mask=[int(i in kept) for i in range(view.total_inputs)])
    return entries


def _latency(run, state: RunState, full: nn.Module) -> dict:
    """Measured latency of the dense, masked and compact networks at batch 1 and the training batch size, timed
    in turns (see prunekit.latency): medians, interquartile ranges, whether any figure is unstable, and the paired
    compact / dense ratios."""
    batch = run.cfg.finetune.batch_size
    models = {"dense": (state.spec.build_full(run.device), state.spec.input_shape),
              "masked": (full, state.spec.input_shape)}
    if state.spec.compaction is not None:
        models["compact"] = (state.model, state.data.input_shape)
    for model, _ in models.values():  # all in the run's memory format (channels_last), so ratios compare like with like
        run.acceleration.bind(model)
    latency = latency_table(models, [1, batch], run.device)
    entries = {"latency_ms": latency.medians(), "latency_iqr_ms": latency.iqrs(),
               "latency_unstable": latency.unstable()}
    if "compact" in models:
        entries["latency_ratio_b1"] = latency.ratio("compact", "dense", "b1")
        entries["latency_ratio"] = latency.ratio("compact", "dense", f"b{batch}")
    if entries["latency_unstable"]:
        # stdout, not a warning: how busy the machine was is no fault of the run
        run.console.line(f"latency: unstable (a spread above {UNSTABLE_SPREAD} x its median: the machine's load "
                         "changed while timing); time it again on an idle machine before comparing")
    return entries


class Evaluate:
    name = "evaluate"

    def run(self, run, state: RunState, resume: dict | None) -> RunState:
        cfg, began = run.cfg, time.perf_counter()
        accelerated = run.acceleration.bind(state.model)  # the precision the network was trained in
        test = evaluate(state.model, state.data, "test", cfg.eval_batch_size, accelerated)
        val = evaluate(state.model, state.data, "val", cfg.eval_batch_size, accelerated)
        if not world.is_main():  # the rest is measured, drawn and written once, by rank 0
            return state
        compaction = state.spec.compaction
        # The final network in its original shapes, for the figures and pruned.pt.
        full = expand(state.model, state.spec.build_full(run.device), compaction) if compaction else state.model
        counts, rows = {}, [dict(row) for row in state.layers]
        if compaction is not None:
            counts.update(_compact_figures(state.model, state.data.input_shape, rows))
            counts.update(_inputs_kept(state))
        if cfg.latency:
            counts.update(_latency(run, state, full))
        method_class = get_method_class(cfg.method.name)
        finished = FinishedRun(full, state.spec.input_shape, cfg, run.dir, lambda: state.data.dataset)
        counts.update(measures(finished))
        if cfg.figures:
            counts.update(draw_figures(finished, run.dir.figures))
        config = OmegaConf.to_container(cfg, resolve=True)
        save_pruned(run.dir.checkpoint("pruned"), full, state.spec, config)
        if compaction is not None:
            save_compact(run.dir.checkpoint("compact"), state.model, state.spec, cfg.data.name)
        run.dir.write_layers(rows)
        state.seconds["evaluate"] = time.perf_counter() - began
        summary = {
            "dataset": cfg.data.name, "data_fingerprint": state.data.dataset.fingerprint,
            "model": cfg.model.name, "method": cfg.method.name,
            # the labels, in the full dataset, of the classes kept by data.classes or data.class_subset
            **({"classes": state.data.dataset.classes} if state.data.dataset.classes is not None else {}),
            "granularity": cfg.method.granularity, "schedule": cfg.schedule.name, "seed": cfg.seed,
            "device": str(run.device),
            "accuracy": test["accuracy"], **({"top5": test["top5"]} if "top5" in test else {}),
            "loss": test["loss"], "val_accuracy": val.get("accuracy"),
            # a run that trains from scratch (train.epochs=0 and no weights loaded) has no dense accuracy to report
            **({"dense_accuracy": state.dense_metrics["test"]["accuracy"]}
               if cfg.train.epochs > 0 or weights.given(cfg.model) else {}),
            "dense_cache_hit": state.dense_hit,
            **state.measured, **counts, **method_class.summary_entries(cfg.method),
            "seconds": {**state.seconds, "total": sum(state.seconds.values())},
        }
        run.dir.write_summary(summary)
        run.dir.log({"event": "done", "accuracy": summary["accuracy"], "density": summary["density"]})
        run.console.summary(summary)
        return state
