"""The GPU options (prunekit/acceleration.py), checked on the CPU: under bf16/fp16, channels_last and a compiled
forward the hooks see true gradients and pruned weights stay exactly zero; the process-wide switches are set for
one run only; an fp16 run resumes to the same result; bad values are one line and exit 2."""
import copy
import functools
import os

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import interrupt_after, read_summary
from prunekit.acceleration import Acceleration
from prunekit.config import OptimConfig, TrainConfig
from prunekit.data import Dataset, Split
from prunekit.engine import TrainHook, build_optimizer, train_epoch, train_step
from prunekit.models import build_model
from prunekit.pruning.masks import MaskSet

pytestmark = pytest.mark.usefixtures("one_thread")
OPTIM = OmegaConf.structured(OptimConfig(batch_size=16, lr_schedule="constant"))


def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = OmegaConf.create({"name": "cnn", "blocks": [[8], [8]], "hidden": 16, "weights": None})
    return build_model(cfg, (3, 8, 8), 4)


def half_pruned(model: torch.nn.Module) -> MaskSet:
    """Masks that drop a random half of every prunable layer's weights."""
    masks = MaskSet(model)
    generator = torch.Generator().manual_seed(1)
    masks.set_groups("weight", {name: torch.rand(layer.weight.shape, generator=generator) > 0.5
                                for name, layer in masks.layers.items()})
    return masks


def images(samples: int = 40) -> Dataset:
    """Random uint8 images (the last batch of 16 is partial) as prunekit's in-memory dataset."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (samples, 3, 8, 8), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, 4, (samples,), generator=generator)
    empty = Split(x[:0], y[:0])
    return Dataset("random", Split(x, y), empty, empty, 4, (3, 8, 8), True, torch.full((3,), 0.5),
                   torch.full((3,), 0.3), crop_padding=0, hflip=False)


class GradientProbe(TrainHook):
    """Keeps a copy of the first conv's gradient as the hooks see it, before the optimiser step."""

    def __init__(self, model):
        self.weight, self.seen = model.features[0].weight, []

    def before_step(self) -> None:
        self.seen.append(self.weight.grad.clone())


def pruned_weights_are_zero(masks: MaskSet) -> bool:
    return all(bool((layer.weight[~layer.weight_mask] == 0).all()) for layer in masks.layers.values())


def train(model, masks, acceleration, epochs=3, probe=None):
    accelerated = acceleration.bind(model)
    optimizer = build_optimizer([{"params": list(model.parameters())}], OPTIM, accelerated.fused_optimizer)
    for epoch in range(epochs):
        stats, _ = train_epoch(model, images(), optimizer, OPTIM, [*([probe] if probe else []), masks],
                               torch.Generator().manual_seed(epoch), 0, 1, accelerated=accelerated)
    return stats, accelerated


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_trains_with_true_gradients_and_masks_holding(precision):
    model = cnn()
    masks, before = half_pruned(model), copy.deepcopy(model)
    reference, x, y = copy.deepcopy(model), *next(images().batches("train", 16, shuffle=False, augment=False))
    probes = GradientProbe(reference), GradientProbe(model)
    train_step(reference, build_optimizer([{"params": list(reference.parameters())}], OPTIM), x, y,
               [probes[0]], 1)
    accelerated = Acceleration(precision=precision, channels_last=True).bind(model)
    optimizer = build_optimizer([{"params": list(model.parameters())}], OPTIM, accelerated.fused_optimizer)
    train_step(model, optimizer, x, y, [probes[1], masks], 1, accelerated)
    # fp16's loss scale (65536) is divided out before any hook runs: the gradient is fp32's, up to rounding
    fp32, reduced = probes[0].seen[0], probes[1].seen[0]
    assert ((reduced - fp32).norm() / fp32.norm()).item() < 0.05
    stats, accelerated = train(model, masks, Acceleration(precision=precision, channels_last=True))
    assert torch.isfinite(torch.tensor(stats["train_loss"])) and pruned_weights_are_zero(masks)
    assert not torch.equal(model.features[0].weight, before.features[0].weight)
    assert (accelerated.scaler is not None) == (precision == "fp16")


def test_channels_last_converts_conv_networks_and_leaves_an_mlp_alone():
    model, keys = cnn(), list(cnn().state_dict())
    accelerated = Acceleration(channels_last=True).bind(model)
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert accelerated.inputs(torch.zeros(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    assert list(model.state_dict()) == keys
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4))
    batch = torch.zeros(2, 3, 8, 8)
    accelerated = Acceleration(channels_last=True).bind(mlp)
    assert not accelerated.channels_last and accelerated.inputs(batch) is batch


@pytest.mark.parametrize("channels_last", [True, False])
def test_latency_is_timed_on_batches_laid_out_as_the_model_trains_on_them(channels_last):
    from prunekit.latency import latency_table

    model = cnn()
    Acceleration(channels_last=channels_last).bind(model)
    layouts = []
    model.register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    assert latency_table({"cnn": (model, (3, 8, 8))}, [2], torch.device("cpu")).medians()["cnn"]["b2"] > 0
    assert layouts and all(layout == channels_last for layout in layouts)


@pytest.mark.slow
def test_a_channels_last_run_times_every_network_in_that_layout(cli, monkeypatch):
    """dense, masked and compact latencies of a channels_last run are all NHWC networks on NHWC batches."""
    from prunekit.stages import evaluate

    layouts, table = {}, evaluate.latency_table

    def recording(models, batches, device):
        for name, (model, _) in models.items():
            convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
            # NHWC throughout, and not merely both layouts at once (as a weight with one input channel is)
            layouts[name] = (all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
                             and any(not w.is_contiguous() for w in convs))
        return table(models, batches, device)

    monkeypatch.setattr(evaluate, "latency_table", recording)
    code, _, err = cli("train", "model=cnn", "channels_last=true", "method.granularity=unit", "train.epochs=1",
                       "prune.epochs=1", "finetune.epochs=0", "figures=false", "hydra.run.dir=run")
    assert code == 0, err
    assert set(layouts) == {"dense", "masked", "compact"} and all(layouts.values()), layouts


@pytest.fixture
def quick_compile(monkeypatch):
    """torch.compile through dynamo and AOTAutograd (parameters as graph inputs, as inductor gets them) but
    without inductor's code generation, whose cold start costs 20-40 s here: scripts/check_compile.py runs
    the same check with inductor."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    yield
    torch._dynamo.reset()


@pytest.mark.usefixtures("quick_compile")
@pytest.mark.slow
def test_compiled_steps_keep_pruned_weights_zero_and_the_state_dict_keys():
    model = cnn()
    masks, keys, before = half_pruned(model), list(model.state_dict()), copy.deepcopy(model)
    _, accelerated = train(model, masks, Acceleration(precision="bf16", channels_last=True, compile=True), 2)
    assert accelerated.forward is not model and pruned_weights_are_zero(masks)
    assert not torch.equal(model.features[0].weight, before.features[0].weight)
    assert list(model.state_dict()) == keys  # no _orig_mod: checkpoints and resume read the module itself


@pytest.mark.usefixtures("quick_compile")
@pytest.mark.slow
def test_gumbel_under_compile_draws_the_same_gates_and_reaches_the_same_result(cli, tmp_path):
    """The gates are sampled outside the compiled graph, from the run's own generator: a compiled run (tau
    annealed, so tau changes between steps) ends with the eager run's topology and accuracy."""
    # 4 pruning epochs of digits' 20 steps: in 2 the gates barely leave their start, and the top-k is a lottery
    args = ("train", "method=gumbel", "method.sparsity=0.9", "prune.epochs=4", "finetune.epochs=1",
            "method.tau_final=0.5", "figures=false", "latency=false")
    assert cli(*args, "hydra.run.dir=eager")[0] == 0
    code, _, err = cli(*args, "compile=true", "hydra.run.dir=compiled")
    assert code == 0, err
    masks = [torch.load(tmp_path / run / "checkpoints" / "pruned.pt", weights_only=False)["model"]
             for run in ("eager", "compiled")]
    mask_keys = [key for key in masks[0] if key.endswith("_mask")]
    assert mask_keys and all(torch.equal(masks[0][key], masks[1][key]) for key in mask_keys)
    eager, compiled = read_summary(tmp_path / "eager"), read_summary(tmp_path / "compiled")
    assert compiled["density"] == eager["density"] == pytest.approx(0.1, abs=1e-3)
    assert compiled["accuracy"] == pytest.approx(eager["accuracy"], abs=0.01) and eager["accuracy"] > 0.8


def test_deterministic_and_cudnn_benchmark_hold_for_one_run_only(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    benchmark = torch.backends.cudnn.benchmark
    cfg = OmegaConf.structured(TrainConfig(deterministic=True))
    cuda = Acceleration.from_config(cfg, torch.device("cuda"))  # only flags: no CUDA call is made
    assert not cuda.cudnn_benchmark  # the autotuner may choose a non-deterministic algorithm
    assert Acceleration.from_config(OmegaConf.structured(TrainConfig()), torch.device("cuda")).cudnn_benchmark
    with cuda.process_settings():
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark == benchmark
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    # on the CPU, deterministic algorithms give exactly the numbers of the default run
    runs = []
    for acceleration in (Acceleration(), Acceleration.from_config(cfg, torch.device("cpu"))):
        model = cnn()
        with acceleration.process_settings():
            train(model, half_pruned(model), acceleration, 2)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][key], runs[1][key]) for key in runs[0])


@pytest.mark.slow
def test_an_fp16_run_interrupted_mid_stage_resumes_to_the_same_result(cli, tmp_path, monkeypatch):
    # An initial loss scale of 2^40 overflows for the first ~20 steps, halving each time: a resumed stage that
    # started its scale over would skip those steps again and end elsewhere.
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0**40))
    args = ("train", "precision=fp16", "model.hidden=[32]", "train.epochs=3", "prune.epochs=1", "finetune.epochs=1",
            "latency=false", "figures=false")
    assert cli(*args, "hydra.run.dir=whole", f"cache_dir={tmp_path}/c1")[0] == 0
    restore = interrupt_after(monkeypatch, 2)  # after the second dense epoch
    assert cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2")[0] == 130
    restore()
    saved = torch.load(tmp_path / "broken" / "checkpoints" / "last.pt", weights_only=True)["scaler"]
    assert saved["scale"] < 2.0**40
    code, _, err = cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2", "resume=true")
    assert code == 0, err
    whole, resumed = read_summary(tmp_path / "whole"), read_summary(tmp_path / "broken")
    for key in ("accuracy", "loss", "dense_accuracy", "density"):
        assert whole[key] == resumed[key], key


@pytest.mark.parametrize("override,named", [
    ("precision=fp8", "precision='fp8' is not allowed; choose one of: fp32, bf16, fp16"),
    ("compile=maybe", "compile=maybe"),
    ("channels_last=sometimes", "channels_last=sometimes"),
    ("cudnn.benchmark=perhaps", "cudnn.benchmark=perhaps"),
])
def test_bad_values_are_one_line_and_exit_2(cli, tmp_path, override, named):
    code, _, err = cli("train", override, "hydra.run.dir=run")
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_the_dense_cache_tells_precisions_apart_and_keeps_the_keys_of_default_runs():
    from prunekit.cache import dense_key

    groups = {"data": {"name": "digits", "root": "x", "download": False}, "model": {"name": "mlp"}}
    base = OmegaConf.merge(OmegaConf.structured(TrainConfig), groups)
    cpu = torch.device("cpu")
    without_options = OmegaConf.masked_copy(base, [k for k in base if k not in ("precision", "channels_last",
                                                                                "compile", "deterministic")])
    assert dense_key(base, cpu, "d") == dense_key(without_options, cpu, "d")  # keys without the options stay valid
    assert dense_key(OmegaConf.merge(base, {"precision": "bf16"}), cpu, "d") != dense_key(base, cpu, "d")
