"""Starting a run from saved weights (``model.weights=PATH``), and the classifier of ``model.pretrained=true``.

The classifier is the network's last prunable layer (its last Linear). The rule:

1. Every other tensor of the file must match the network by name and shape, or the file is refused with
   one line naming the first differences. prunekit's mask buffers in a file are ignored (a run starts
   dense), and BatchNorm's ``num_batches_tracked`` may be absent (torchvision's files predate it).
2. The rows of the file's classifier are reused only where the classes they stand for are known:
   - model.weights: PATH is a checkpoint of a prunekit run (``RUN/checkpoints/*.pt`` beside
     ``RUN/.hydra/config.yaml``) on the same data.name; its rows are that run's classes: all of them, or its
     data.classes, or its data.class_subset drawn again with its seed;
   - model.pretrained: the dataset is imagenet with as many wnid folders as the classifier has rows
     (ImageNet's 1000), so that a class's label, its sorted position, is its row.
3. When the known classes contain the run's classes, the classifier keeps their rows in the run's order
   (the whole classifier when the classes are the same); otherwise it keeps its fresh initialisation for
   the run's classes. :class:`Start` says which happened and why.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from prunekit.checkpoints import read_state_dict
from prunekit.data.classes import ClassPick
from prunekit.data.dataset import Dataset
from prunekit.errors import UserError, reason
from prunekit.layers import prunable_layers

MASKS = (".weight_mask", ".bias_mask")  # prunekit's mask buffers (prunekit/pruning/masks.py)
OPTIONAL = ".num_batches_tracked"
SHOWN = 3  # differences named in an error, rows listed in a message


class Start(NamedTuple):
    """What a run started from: the weights file, the file's classifier rows it kept (None: replaced), why."""

    source: str
    rows: list[int] | None
    note: str

    @property
    def line(self) -> str:
        return f"weights  {self.source}: {self.note}"


def given(cfg: DictConfig) -> bool:
    """Whether the model node ``cfg`` starts the network from weights (model.weights or model.pretrained)."""
    return cfg.get("weights") is not None or bool(cfg.get("pretrained"))


def check_request(cfg: DictConfig) -> None:
    """Checks of the model node ``cfg`` that need no network: one source of weights, and the file is there."""
    path = cfg.get("weights")
    if path is None:
        return
    if cfg.get("pretrained"):
        raise UserError("model.weights and model.pretrained=true both give the starting weights; set one of them")
    if not Path(path).expanduser().is_file():
        raise UserError(f"model.weights={path}: no such file; give a state_dict such as a run's checkpoints/dense.pt")


def identity(path: str) -> dict:
    """What the dense weights owe to the file ``path``: its content and the classes its classifier stands for."""
    try:
        with open(Path(path).expanduser(), "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        raise UserError(f"model.weights={path} cannot be read ({reason(error)})") from error
    return {"sha256": digest, "trained_on": trained_on(Path(path).expanduser())}


def trained_on(path: Path) -> dict | None:
    """The dataset, class selection and seed of the prunekit run that wrote checkpoint ``path``; None when
    ``path`` is not in a run directory."""
    config = path.parent.parent / ".hydra" / "config.yaml"
    if path.parent.name != "checkpoints" or not config.is_file():
        return None
    try:
        run = OmegaConf.load(config)
        classes = run.data.get("classes")
        return {"data": str(run.data.name), "seed": int(run.seed), "class_subset": run.data.get("class_subset"),
                "classes": [int(c) for c in classes] if classes is not None else None}
    except Exception:  # noqa: BLE001 - a config that cannot be read tells nothing about the classes
        return None


def start_from(model: nn.Module, cfg: DictConfig, dataset: Dataset) -> Start | None:
    """Load the weights that the model node ``cfg`` asks for into ``model``, freshly built for ``dataset``;
    None when it asks for none (``model.pretrained`` weights other than the classifier are the builder's)."""
    if cfg.get("weights") is not None:
        path = Path(cfg.weights).expanduser()
        source = f"model.weights={cfg.weights}"
        state = read_state_dict(path)
        _load_body(model, state, source, cfg.name)
        known, about = _classes_of_run(trained_on(path), dataset)
    elif cfg.get("pretrained"):
        if dataset.name != "imagenet":  # the builder's fresh classifier stays; no need to read the file again
            return Start("model.pretrained", None, _replaced(dataset, f"{dataset.name} classes are not ImageNet's"))
        from prunekit.models.pretrained import imagenet_weights, weights_path  # torchvision: slow to import

        source = "model.pretrained"
        state = read_state_dict(Path(weights_path(imagenet_weights(cfg.name))))
        known, about = list(range(dataset.full_num_classes)), "ImageNet classes"
    else:
        return None
    rows, note = _classifier_rows(state, model, known, about, dataset)
    return Start(source, rows, note)


def _load_body(model: nn.Module, state: dict[str, torch.Tensor], source: str, network: str) -> None:
    """Load everything but the classifier, after checking that every name and shape matches."""
    classifier = prunable_layers(model)[-1][0] + "."
    own = {k: v for k, v in model.state_dict().items() if not k.endswith(MASKS)}
    theirs = {k: v for k, v in state.items() if not k.endswith(MASKS)}

    def fits(key: str, ours: torch.Tensor) -> bool:
        first = 1 if key.startswith(classifier) else 0  # the classifier may have any number of rows (classes)
        return theirs[key].shape[first:] == ours.shape[first:]

    missing = [k for k in own if k not in theirs and not k.endswith(OPTIONAL)]
    unexpected = [k for k in theirs if k not in own]
    reshaped = [f"{k} is {list(theirs[k].shape)} in the file but {list(v.shape)} here"
                for k, v in own.items() if k in theirs and not fits(k, v)]
    if missing or unexpected or reshaped:
        parts = [f"missing {', '.join(missing[:SHOWN])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:SHOWN])}" if unexpected else "", *reshaped[:SHOWN]]
        raise UserError(
            f"{source} does not fit this {network} network ({'; '.join(p for p in parts if p)}); it was saved "
            "from another architecture or input size"
        )
    merged = model.state_dict()
    merged.update({k: v for k, v in theirs.items() if not k.startswith(classifier)})
    model.load_state_dict(merged)


def _classes_of_run(run: dict | None, dataset: Dataset) -> tuple[list[int] | None, str]:
    """The classes, as labels of ``dataset``, that the rows of a run's checkpoint stand for, with what they
    are; or None and why they are not known."""
    if run is None:
        return None, "the file is not a checkpoint of a prunekit run, so its classes are unknown"
    if run["data"] != dataset.name:
        return None, f"the file was trained on {run['data']}, not {dataset.name}"
    given = tuple(run["classes"]) if run["classes"] is not None else None
    try:
        classes = ClassPick(dataset.name, given, run["class_subset"], run["seed"]).resolve(dataset.full_num_classes)
    except UserError:
        return None, f"the file's classes are not classes of {dataset.name} here"
    return (classes if classes is not None else list(range(dataset.full_num_classes))), f"{dataset.name} classes"


def _classifier_rows(state: dict[str, torch.Tensor], model: nn.Module, known: list[int] | None, about: str,
                     dataset: Dataset) -> tuple[list[int] | None, str]:
    """Copy the rows of the run's classes from the file's classifier when ``known`` (the classes of the
    file's rows, described by ``about``; None: unknown, ``about`` says why) contains them. Returns the rows
    copied (None: the classifier keeps its initialisation) and a note on what happened."""
    name, layer = prunable_layers(model)[-1]
    weight, bias = state[f"{name}.weight"], state.get(f"{name}.bias")
    wanted = dataset.original_classes
    if known is not None and len(known) != len(weight):
        known, about = None, f"the file's classifier has {len(weight)} rows but there are {len(known)} {about}"
    if known is not None and not set(wanted) <= set(known):
        known, about = None, f"the file's {about} do not include class {min(set(wanted) - set(known))}"
    if known is None:
        return None, _replaced(dataset, about)
    rows = [known.index(label) for label in wanted]
    with torch.no_grad():
        layer.weight.copy_(weight[rows])
        if layer.bias is not None and bias is not None:
            layer.bias.copy_(bias[rows])
    if rows == list(range(len(weight))):
        return rows, f"classifier loaded whole (the same {about})"
    shown = ", ".join(map(str, rows[:SHOWN])) + (f", ... ({len(rows)} rows)" if len(rows) > SHOWN else "")
    return rows, f"classifier keeps rows {shown} of the file, those of the selected {about}"


def _replaced(dataset: Dataset, why: str) -> str:
    return f"classifier replaced for {dataset.num_classes} classes ({why})"
