"""Multi-layer perceptron: the fully connected networks of the Gumbel, CRESPR and input-pruning papers."""
from __future__ import annotations

import math
from collections import OrderedDict

from omegaconf import DictConfig
from torch import nn

from prunekit.errors import UserError


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


def build_mlp(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """Build an MLP with hidden sizes ``cfg.hidden`` (dropout ``cfg.dropout``) on ``prod(input_shape)`` inputs.

    The default ``hidden=[300, 100]`` on 784 inputs and 10 classes is LeNet-300-100 (266,610
    parameters). An empty ``hidden`` gives multinomial logistic regression.
    """
    hidden = [int(h) for h in cfg.hidden]
    if any(h < 1 for h in hidden):
        raise UserError(f"model.hidden={hidden} is not allowed; every hidden size must be a positive integer")
    # .get: checkpoints written before the option existed hold no dropout key
    return MLP(math.prod(input_shape), hidden, num_classes, cfg.get("dropout", 0.0))
