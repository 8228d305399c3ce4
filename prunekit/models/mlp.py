"""Multi-layer perceptron: the fully connected networks of the Gumbel, CRESPR and input-pruning papers."""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from prunekit.config import FRACTION, ModelConfig, ranged
from prunekit.errors import UserError
from prunekit.models import register_model


@dataclass
class MLPConfig(ModelConfig):
    hidden: list[int] = ranged([300, 100], 1)
    dropout: float = ranged(0.0, **FRACTION)  # dropout after every hidden ReLU; 0 adds no Dropout layer


class MLP(nn.Sequential):
    """Flatten, then Linear layers with ReLU between them; the last Linear gives the logits.

    Children are named ``flatten, fc1, relu1, fc2, relu2, ..., fcN`` so that layer tables read
    naturally and ``named_modules()`` lists the Linear layers in forward order. With ``dropout > 0`` a
    ``dropN`` follows every ``reluN``.
    """

    def __init__(self, in_features: int, hidden: list[int], num_classes: int, dropout: float = 0.0) -> None:
        sizes = [in_features, *hidden, num_classes]
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
            layers[f"fc{k}"] = nn.Linear(n_in, n_out)
            if k < len(sizes) - 1:
                layers[f"relu{k}"] = nn.ReLU()
                if dropout > 0:
                    layers[f"drop{k}"] = nn.Dropout(dropout)
        super().__init__(layers)


@register_model("mlp", config=MLPConfig)
def build_mlp(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """Fully connected ReLU network on flattened inputs (default LeNet-300-100).

    An MLP with hidden sizes ``cfg.hidden`` (dropout ``cfg.dropout``) on ``prod(input_shape)`` inputs.

    The default ``hidden=[300, 100]`` on 784 inputs and 10 classes is LeNet-300-100 (266,610
    parameters). An empty ``hidden`` gives multinomial logistic regression.
    """
    hidden = [int(h) for h in cfg.hidden]
    if any(h < 1 for h in hidden):
        raise UserError(f"model.hidden={hidden} is not allowed; every hidden size must be a positive integer")
    # .get: checkpoints written before the option existed hold no dropout key
    return MLP(math.prod(input_shape), hidden, num_classes, cfg.get("dropout", 0.0))
