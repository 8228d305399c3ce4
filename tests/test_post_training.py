"""Post-training pruning from calibration samples (method=wanda, method=sparsegpt): the Wanda metric and its per-row
selection by hand, SparseGPT against the least-squares re-fit of the kept weights, a convolution as the Linear
layer of its unfolded patches, N:M masks, per-layer counts of both scopes, the sequential walk, the calibration
draw, and refused networks."""
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.errors import UserError
from prunekit.pruning.calibration import calibration_index, check_convolutions, input_columns
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.methods.sparsegpt import SparseGPTConfig, sparsegpt
from prunekit.pruning.methods.wanda import WandaConfig, keep_per_row, wanda_scores
from prunekit.pruning.patterns import Pattern
from prunekit.config import MethodConfig

CONFIGS = {"wanda": WandaConfig, "sparsegpt": SparseGPTConfig}


def _data(x: torch.Tensor) -> SimpleNamespace:
    """The run's data as the methods read it: the training labels' count and the samples at given positions."""
    return SimpleNamespace(dataset=SimpleNamespace(train=SimpleNamespace(y=torch.zeros(len(x)))),
                           samples=lambda split, index, size: ((x[c], None) for c in index.split(size)))


def _method(name: str, model: nn.Module, x: torch.Tensor, **options):
    config = CONFIGS.get(name, MethodConfig)
    cfg = OmegaConf.merge(OmegaConf.structured(config), {"name": name, "calibration_samples": len(x), **options}
                          if name in CONFIGS else {"name": name, **options})
    masks = MaskSet(model)
    return get_method_class(name)(cfg, model, masks, _data(x), 0), masks


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


def test_wanda_scores_the_weight_times_its_input_norm_and_keeps_the_same_share_of_every_row():
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 0.5], [4.0, 1.0, -1.0, 2.0]]))
    x = torch.tensor([[3.0, 0.0, 0.0, 4.0], [4.0, 1.0, 0.5, 3.0]])  # input norms 5, 1, 0.5, 5
    assert torch.allclose(wanda_scores(layer.weight, x.norm(dim=0)),
                          torch.tensor([[5.0, 2.0, 1.5, 2.5], [20.0, 1.0, 0.5, 10.0]]))
    method, masks = _method("wanda", nn.Sequential(layer), x)
    method.prune(0.5)  # magnitude would keep -2 and 3 of row 0; Wanda keeps 1 and 0.5 (the inputs are large)
    assert masks.layers["0"].weight_mask.tolist() == [[True, False, False, True], [True, False, False, True]]
    assert torch.equal(layer.weight, torch.tensor([[1.0, 0, 0, 0.5], [4.0, 0, 0, 2.0]]))  # no weight update
    scores = torch.tensor([[5.0, 2.0, 1.5, 2.5], [20.0, 1.0, 0.5, 10.0]])
    alive = torch.ones(2, 4, dtype=torch.bool)
    # 5 of 8: two per row, and the third goes to the row whose third best (2.0 against 1.0) is higher
    assert keep_per_row(scores, alive, 5).tolist() == [[True, True, False, True], [True, False, False, True]]


def test_sparsegpt_with_the_pruned_columns_first_is_the_least_squares_refit_of_the_kept_weights():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 40, generator=generator, dtype=torch.float64)  # 6 inputs, 40 samples
    weight = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    weight[:, :3] *= 1e-3  # the three first columns have by far the lowest saliency: they are the ones pruned
    alive = torch.ones(3, 6, dtype=torch.bool)
    pruned, keep = sparsegpt(weight, 2 * x @ x.T / 40, alive, 9, None, block_size=128, dampening=0.0)
    assert keep.tolist() == [[False] * 3 + [True] * 3] * 3
    kept = x[3:]
    refit = weight @ x @ kept.T @ torch.linalg.inv(kept @ kept.T)  # W_S = W X X_S^T (X_S X_S^T)^-1
    assert torch.allclose(pruned[:, 3:], refit, atol=1e-10) and not pruned[:, :3].any()


def test_sparsegpt_lazy_blocks_give_the_same_weights_as_one_block():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(16, 50, generator=generator, dtype=torch.float64)
    weight = torch.randn(5, 16, generator=generator, dtype=torch.float64)
    alive = torch.ones(5, 16, dtype=torch.bool)
    one = sparsegpt(weight, x @ x.T, alive, None, Pattern(2, 4), block_size=16, dampening=0.01)
    lazy = sparsegpt(weight, x @ x.T, alive, None, Pattern(2, 4), block_size=4, dampening=0.01)
    assert torch.equal(one[1], lazy[1]) and torch.allclose(one[0], lazy[0], atol=1e-10)


@pytest.mark.parametrize("name", ["wanda", "sparsegpt"])
def test_a_convolution_is_pruned_as_the_linear_layer_of_its_unfolded_patches(name):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1)
    images = torch.randn(6, 2, 7, 7)
    patches = input_columns(conv, images)  # [6 * 16 positions, 18]
    assert torch.allclose(patches @ conv.weight.flatten(1).T + conv.bias,
                          conv(images).permute(0, 2, 3, 1).reshape(-1, 3), atol=1e-6)
    linear = nn.Linear(18, 3)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        linear.bias.copy_(conv.bias)
    as_conv, conv_masks = _method(name, nn.Sequential(conv), images, sparsity=0.5)
    as_linear, linear_masks = _method(name, nn.Sequential(linear), patches, sparsity=0.5)
    as_conv.prune(0.5)
    as_linear.prune(0.5)
    assert torch.equal(conv_masks.layers["0"].weight_mask.flatten(1), linear_masks.layers["0"].weight_mask)
    assert torch.allclose(conv.weight.flatten(1), linear.weight, atol=1e-5)


@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
@pytest.mark.parametrize("name", ["wanda", "sparsegpt"])
def test_n_of_m_masks_keep_exactly_n_of_every_m(name, pattern):
    method, masks = _method(name, _mlp(), torch.randn(20, 8), pattern=pattern)
    method.prune(0.5)
    n, m = map(int, pattern.split(":"))
    for layer in masks.layers.values():
        assert (layer.weight_mask.view(layer.weight.shape[0], -1, m).sum(2) == n).all()
        assert not layer.weight[~layer.weight_mask].any()


@pytest.mark.parametrize("name", ["wanda", "sparsegpt"])
def test_scope_global_keeps_per_layer_what_global_magnitude_keeps_and_layer_the_same_share(name):
    x = torch.randn(20, 8)
    magnitude, magnitude_masks = _method("magnitude", _mlp(), x, scope="global", sparsity=0.7)
    magnitude.prune(0.7)
    expected = {n: int(layer.weight_mask.sum()) for n, layer in magnitude_masks.layers.items()}
    assert len(set(expected.values())) > 1  # the global ranking does not keep the same count of every layer
    method, masks = _method(name, _mlp(), x, scope="global", sparsity=0.7)
    method.prune(0.7)
    assert {n: int(layer.weight_mask.sum()) for n, layer in masks.layers.items()} == expected
    method, masks = _method(name, _mlp(), x, scope="layer", sparsity=0.7)
    method.prune(0.7)
    assert {n: int(layer.weight_mask.sum()) for n, layer in masks.layers.items()} == {"0": 19, "2": 19, "4": 10}


@pytest.mark.parametrize("name", ["wanda", "sparsegpt"])
def test_each_layer_reads_the_outputs_of_the_layers_already_pruned(name):
    x = torch.randn(20, 8)
    model = _mlp()
    dense_hidden = model[:2](x).detach()
    method, masks = _method(name, model, x, sparsity=0.6)
    seen = []
    accumulate = method.accumulate
    method.accumulate = lambda columns: seen.append(columns) or accumulate(columns)
    method.prune(0.6)
    assert torch.allclose(seen[1], model[:2](x), atol=1e-6)  # layer 1 as pruned (and, for SparseGPT, updated)
    assert not torch.allclose(seen[1], dense_hidden, atol=1e-3)


def test_calibration_draws_that_many_training_samples_with_the_seed():
    index = calibration_index(100, 7, seed=3)
    assert len(index) == 7 and len(index.unique()) == 7 and int(index.max()) < 100
    assert torch.equal(index, calibration_index(100, 7, seed=3))
    assert not torch.equal(index, calibration_index(100, 7, seed=4))
    method, _ = _method("wanda", _mlp(), torch.randn(50, 8), calibration_samples=12)
    assert [positions for _, _, positions in method.walk()][0] == 12
    with pytest.raises(UserError, match="calibration_samples=200"):
        calibration_index(100, 200, seed=0)


def test_a_grouped_convolution_is_refused_in_one_line():
    with pytest.raises(UserError, match="grouped"):
        check_convolutions(MaskSet(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))))
