"""prunekit/checkpoints.py: every checkpoint kind round-trips; anything else is refused in one line."""
from __future__ import annotations

import pytest
import torch

from prunekit import checkpoints
from prunekit.artifacts import load_compact
from prunekit.cache import DenseCache
from prunekit.checkpoints import CheckpointError
from prunekit.state import ModelSpec

SPEC = ModelSpec({"name": "mlp", "hidden": [8], "dropout": 0.0, "weights": None}, (1, 4, 4), 3)
CALLS: list[str] = []


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return SPEC.build(torch.device("cpu"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _refusal(path, read) -> str:
    with pytest.raises(CheckpointError) as caught:
        read(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    return message


def test_every_kind_round_trips(tmp_path):
    model = _network()
    weights = model.state_dict()
    last = {"stage": "prune", "epoch": 2, "done": False, "state": {"model": weights}, "optimizer": None,
            "scaler": None, "config": {"seed": 0}, "log_length": 5, "rng": {"torch": torch.get_rng_state()}}
    checkpoints.save(tmp_path / "last.pt", "last", **last)
    record = checkpoints.read(tmp_path / "last.pt", "last")
    assert record["kind"] == "last" and record["format"] == checkpoints.FORMAT
    assert record["stage"] == "prune" and _same(record["state"]["model"], weights)

    checkpoints.save_dense(tmp_path / "dense.pt", weights)
    assert _same(checkpoints.read_state_dict(tmp_path / "dense.pt"), weights)

    cache = DenseCache(str(tmp_path / "cache"), "key")
    cache.store({"model": weights, "metrics": {"val": {"accuracy": 0.5}}})
    entry = cache.load(torch.device("cpu"))
    assert _same(entry["model"], weights) and entry["metrics"] == {"val": {"accuracy": 0.5}}

    checkpoints.save_pruned(tmp_path / "pruned.pt", model, SPEC, {"model": SPEC.model})
    record = checkpoints.read(tmp_path / "pruned.pt", "pruned")
    assert _same(record["model"], weights) and ModelSpec.from_dict(record["spec"]) == SPEC
    assert (record["input_shape"], record["num_classes"]) == ([1, 4, 4], 3)

    checkpoints.save_compact(tmp_path / "compact.pt", model, SPEC, "digits")
    rebuilt, record = load_compact(tmp_path / "compact.pt", expect={"dataset": "digits", "model": SPEC.model})
    x = torch.randn(2, 1, 4, 4)
    assert torch.equal(rebuilt(x), model.eval()(x)) and record["dataset"] == "digits"


def test_a_file_of_another_kind_or_no_checkpoint_is_refused_in_one_line(tmp_path):
    model = _network()
    checkpoints.save_pruned(tmp_path / "pruned.pt", model, SPEC, {})
    checkpoints.save_dense(tmp_path / "dense.pt", model.state_dict())
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert "it is a pruned checkpoint" in _refusal(tmp_path / "pruned.pt", lambda p: checkpoints.read(p, "last"))
    assert "bare state_dict" in _refusal(tmp_path / "dense.pt", lambda p: checkpoints.read(p, "compact"))
    assert "plain state_dict" in _refusal(tmp_path / "pruned.pt", checkpoints.read_state_dict)
    assert "not a file written" in _refusal(tmp_path / "notes.txt", lambda p: checkpoints.read(p, "pruned"))
    # compact.pt as written before the one key scheme: another format, refused rather than misread
    torch.save({"format": "prunekit-compact-1", "dataset": "digits", "spec": SPEC.to_dict(),
                "state_dict": model.state_dict()}, tmp_path / "old.pt")
    assert "format prunekit-compact-1" in _refusal(tmp_path / "old.pt", load_compact)
    checkpoints.save_compact(tmp_path / "compact.pt", model, SPEC, "digits")
    assert "dataset digits, not mnist" in _refusal(
        tmp_path / "compact.pt", lambda p: load_compact(p, expect={"dataset": "mnist"}))
    with pytest.raises(ValueError, match="holds"):  # a writer that forgets a key is a bug, caught at once
        checkpoints.save(tmp_path / "x.pt", "compact", model={}, spec={})


class Sneaky:
    """Unpickling it would call :func:`_ran`: a checkpoint that names code."""

    def __reduce__(self):
        return _ran, ("unpickled",)


def _ran(what: str) -> str:
    CALLS.append(what)
    return what


def test_a_pickle_that_names_code_is_refused_without_running_it(tmp_path):
    torch.save({"kind": "last", "format": checkpoints.FORMAT, "stage": Sneaky()}, tmp_path / "last.pt")
    message = _refusal(tmp_path / "last.pt", lambda p: checkpoints.read(p, "last"))
    assert "refused" in message and "test_checkpoints._ran" in message and "weights_only" not in message
    torch.save({"fc1.weight": Sneaky()}, tmp_path / "weights.pt")
    assert "state_dict()" in _refusal(tmp_path / "weights.pt", checkpoints.read_state_dict)
    assert CALLS == []


@pytest.mark.parametrize("entry", ["old", "other_kind"])
def test_a_cache_entry_of_another_format_or_kind_is_a_miss_set_aside(tmp_path, capsys, entry):
    cache = DenseCache(str(tmp_path), "key")
    weights = _network().state_dict()
    if entry == "old":  # as entries were written before the one key scheme
        torch.save({"model": weights, "metrics": {"val": {}, "test": {}}}, cache.path)
    else:
        checkpoints.save_pruned(cache.path, _network(), SPEC, {})
    assert cache.load(torch.device("cpu")) is None
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and cache.path.name in warnings[0] and "dense_cache" in warnings[0], warnings
    assert not cache.path.exists() and len(list(tmp_path.glob("key.pt.bad-*"))) == 1
