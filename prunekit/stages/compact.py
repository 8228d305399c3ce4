"""The compaction stage: the masked network becomes a physically smaller one with the same outputs, and the
data view drops the input features it no longer reads (prunekit/pruning/compaction.py)."""
from __future__ import annotations

import time

from prunekit.layers import is_mlp
from prunekit.pruning.compaction import compact
from prunekit.state import ModelSpec, RunState


class Compact:
    name = "compact"

    def run(self, run, state: RunState, resume: dict | None) -> RunState:
        began = time.perf_counter()
        before = sum(p.numel() for p in state.model.parameters())
        model, compaction = compact(state.model, state.data.input_shape, is_mlp(state.model))
        spec = ModelSpec(state.spec.model, state.spec.input_shape, state.spec.num_classes, compaction)
        state.replace_model(model.to(run.device), spec)
        after = sum(p.numel() for p in state.model.parameters())
        state.measured["compact_coupled_kept"] = compaction.coupled_kept
        state.seconds["compact"] = time.perf_counter() - began
        inputs = None if compaction.inputs_kept is None else len(compaction.inputs_kept)
        run.dir.log({"event": "compacted", "params_before": before, "params_after": after,
                     "inputs_kept": inputs, "coupled_kept": compaction.coupled_kept,
                     "seconds": state.seconds["compact"]})
        run.console.line(f"compact  {before:,} -> {after:,} parameters"
                         + (f", {inputs} input features kept" if inputs is not None else "")
                         + (f", {compaction.coupled_kept} channels kept for a coupled layer"
                            if compaction.coupled_kept else ""))
        run.save_last(state, self.name, 1, done=True)
        return state
