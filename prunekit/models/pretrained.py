"""Loading torchvision's ImageNet weights from torch hub's cache, with a usable error when offline."""
from __future__ import annotations

import os
import pickle
import warnings
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlparse

import torch
from torch import nn

from prunekit.data.source import reason
from prunekit.errors import UserError

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

# prunekit's network name -> torchvision's ImageNet weights for its imagenet variant (vgg16 has BatchNorm)
IMAGENET_WEIGHTS = {"vgg16": "VGG16_BN_Weights", "resnet18": "ResNet18_Weights"}


def imagenet_weights(name: str) -> WeightsEnum:
    """The torchvision ImageNet weights that ``model.pretrained=true`` loads for network ``name``."""
    import torchvision.models  # a second to import: only runs that ask for pretrained weights pay it

    return getattr(torchvision.models, IMAGENET_WEIGHTS[name]).DEFAULT


def weights_path(weights: WeightsEnum) -> str:
    """Where torch hub looks for ``weights``: ``torch.hub.get_dir()/checkpoints/<file name of the URL>``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))


def pretrained_network(constructor: Callable[[], nn.Module], weights: WeightsEnum) -> nn.Module:
    """Build ``constructor()`` (a torchvision network with its 1000 ImageNet classes) with ``weights``.

    The file is read from torch hub's cache and downloaded there if missing (torchvision checks the
    hash of a download). If that fails, a ``UserError`` names the file and where to put it, which is
    the way to use pretrained weights on a machine without network access.
    """
    path = weights_path(weights)
    existed = os.path.exists(path)
    # Built on the meta device: random initialisation of weights about to be replaced would cost
    # seconds for VGG-16; assign=True then makes the loaded tensors the parameters.
    with torch.device("meta"):
        net = constructor()
    try:
        with warnings.catch_warnings():  # torch's notes on old formats: the error below says what is wrong
            warnings.simplefilter("ignore")
            state = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
        net.load_state_dict(state, assign=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
        why = f"{type(exc).__name__}: {reason(exc)}"
        if existed:
            raise UserError(
                f"pretrained weights {path} could not be loaded ({why}); replace the file with {weights.url}"
            ) from exc
        raise UserError(
            f"pretrained weights not found at {path} and the download failed ({why}); "
            f"download {weights.url} and place the file there"
        ) from exc
    return net
