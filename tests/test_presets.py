"""Every experiment preset composes; each README table row has a command in README (a preset and the row's own
overrides) that composes to the setting the row was produced with; a method's preset and its baseline's share one
budget. Configs are composed only: nothing trains."""
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from prunekit.catalog import catalog
from prunekit.config import config_dir, register_schemas
from prunekit.validation import validate

README = Path(__file__).resolve().parent.parent / "README.md"
DOCS = [README, *sorted((README.parent / "docs").glob("**/*.md"))]  # the tables live on the method pages
PRESETS = dict(catalog()["experiment"])  # name -> the description line `prunekit list` prints
STAGES = ("train", "prune", "finetune")

# README's result tables, the one place these tests read them from: per column of a row, the command README gives
# for it (a preset and the row's own overrides) and the settings the row says it ran with.
GUMBEL = {"method.tau": 3.0, "method.init_keep": 0.95, "schedule.name": "agp", "schedule.end": 0.5}
MAGNITUDE = {"method.name": "magnitude", "method.granularity": "weight", "prune.lr": 0.003, "schedule.end": 0.5}
CRESPR = {"method.name": "crespr", "method.cluster_by": "random", "method.cross": 0.0, "method.hessian": "fisher",
          "prune.lr": 0.003, "schedule.name": "exp", "schedule.end": 0.5}
UNITS = {"method.sparsity": 0.5, "method.scope": "layer", "prune.lr": 0.01, "schedule.name": "agp"}
FEATURES = {"method.granularity": "input", "prune.lr": 0.03, "schedule.name": "one_shot"}
ROWS = {
    # "Gumbel against magnitude on Fashion-MNIST"
    "gumbel 2%": ("gumbel_fashion_mnist", ["method.sparsity=0.98", "prune.lr=0.003", "method.lam=0.0003",
                                           "method.gate_lr=0.1"],
                  {**GUMBEL, "method.sparsity": 0.98, "prune.lr": 0.003, "method.lam": 3e-4, "method.gate_lr": 0.1}),
    "gumbel 0.5%": ("gumbel_fashion_mnist", ["method.sparsity=0.995", "prune.lr=0.003", "method.lam=0.001",
                                             "method.gate_lr=0.1"],
                    {**GUMBEL, "method.sparsity": 0.995, "prune.lr": 0.003, "method.lam": 1e-3, "method.gate_lr": 0.1}),
    "gumbel 0.15%": ("gumbel_fashion_mnist", [],  # the preset alone: the row issue 21 found it did not run
                     {**GUMBEL, "method.sparsity": 0.9985, "prune.lr": 0.01, "method.lam": 3e-3,
                      "method.gate_lr": 0.3}),
    "gumbel's magnitude 2%": ("gumbel_fashion_mnist_magnitude", ["method.sparsity=0.98", "schedule=agp"],
                              {**MAGNITUDE, "method.sparsity": 0.98, "schedule.name": "agp"}),
    "gumbel's magnitude 0.5%": ("gumbel_fashion_mnist_magnitude", ["method.sparsity=0.995", "schedule=agp"],
                                {**MAGNITUDE, "method.sparsity": 0.995, "schedule.name": "agp"}),
    "gumbel's magnitude 0.15%": ("gumbel_fashion_mnist_magnitude", [],
                                 {**MAGNITUDE, "method.sparsity": 0.9985, "schedule.name": "exp"}),
    # "CRESPR's reading against magnitude on Fashion-MNIST"
    "crespr's magnitude 99%": ("crespr_fashion_mnist_magnitude", [],
                               {**MAGNITUDE, "method.sparsity": 0.99, "schedule.name": "exp"}),
    "crespr 99%": ("crespr_fashion_mnist", [],
                   {**CRESPR, "method.sparsity": 0.99, "method.clusters": 2, "method.criterion": "magnitude"}),
    "crespr 99% Q": ("crespr_fashion_mnist", ["method.clusters=4", "method.criterion=obd"],
                     {**CRESPR, "method.sparsity": 0.99, "method.clusters": 4, "method.criterion": "obd"}),
    "crespr's magnitude 99.5%": ("crespr_fashion_mnist_magnitude", ["method.sparsity=0.995", "schedule=agp"],
                                 {**MAGNITUDE, "method.sparsity": 0.995, "schedule.name": "agp"}),
    "crespr 99.5%": ("crespr_fashion_mnist", ["method.sparsity=0.995", "method.clusters=4", "method.criterion=obd"],
                     {**CRESPR, "method.sparsity": 0.995, "method.clusters": 4, "method.criterion": "obd"}),
    "crespr 99.5% Q": ("crespr_fashion_mnist", ["method.sparsity=0.995", "method.clusters=8"],
                       {**CRESPR, "method.sparsity": 0.995, "method.clusters": 8, "method.criterion": "magnitude"}),
    # "Input pruning on Fashion-MNIST": method.lam and magnitude's schedule.end were chosen per row and not recorded
    "inputprune (a)": ("inputprune_fashion_mnist", ["method.sparsity=0.5"],
                       {**UNITS, "method.name": "inputprune", "method.input_sparsity": 0.25, "schedule.end": 0.5}),
    "magnitude units (a)": ("inputprune_fashion_mnist_magnitude", ["method.sparsity=0.5"],
                            {**UNITS, "method.name": "magnitude", "method.granularity": "unit"}),
    "inputprune (b) 10%": ("inputprune_fashion_mnist", ["method.sparsity=0", "method.input_sparsity=0.9"],
                           {"method.name": "inputprune", "method.sparsity": 0.0, "method.input_sparsity": 0.9,
                            "prune.lr": 0.01, "schedule.name": "agp", "schedule.end": 0.5}),
    "column norm (b) 25%": ("inputprune_fashion_mnist_features", ["method.sparsity=0.75"],
                            {**FEATURES, "method.name": "magnitude", "method.sparsity": 0.75}),
    "random (b) 10%": ("inputprune_fashion_mnist_features", ["method=random", "method.sparsity=0.9"],
                       {**FEATURES, "method.name": "random", "method.sparsity": 0.9}),
    # "LRP against its rivals on Fashion-MNIST": the dense network, then the criteria with the paper's settings
    "lrp dense network": ("lrp_fashion_mnist_dense", [],
                          {"model.blocks": [[16, 16], [32, 32], [64]], "model.hidden": 64, "method.sparsity": 0.0,
                           "train.epochs": 8, "train.optimizer": "sgd", "train.lr": 0.05, "train.lr_schedule": "cosine",
                           "prune.epochs": 0, "finetune.epochs": 0}),
    "lrp subsets": ("lrp_fashion_mnist", ["method.sparsity=0.4"],
                    {"data.class_subset": 3, "method.samples_per_class": 10, "method.scope": "global",
                     "schedule.name": "one_shot", "prune.epochs": 0, "finetune.epochs": 0}),
    "lrp ten classes": ("lrp_fashion_mnist", ["data.class_subset=null", "method.sparsity=0.4"],
                        {"data.class_subset": None, "method.samples_per_class": 10, "schedule.name": "one_shot"}),
    "lrp fine-tuned": ("lrp_fashion_mnist_finetune", [],
                       {"method.sparsity": 0.3, "method.samples_per_class": 100, "method.scope": "global",
                        "schedule.name": "iterative", "prune.epochs": 3, "prune.lr": 0.01, "prune.lr_schedule": "cycle",
                        "finetune.epochs": 0}),
}
# The LRP tables' criteria and the normalisation each ran with (the line under each table).
CRITERIA = {"gradient": ["method=gradient"], "lrp": ["method=lrp"], "magnitude": ["method=magnitude",
            "method.normalize=l2"], "random": ["method=random"], "taylor": ["method=taylor"]}
NORMALIZE = {"gradient": "l2", "lrp": "none", "magnitude": "l2", "random": "none", "taylor": "l2"}
BASELINE = re.compile(r"Baselines? of (\w+)")  # how a baseline preset's description names its method's preset
# Choices a table made on validation that were not recorded: README's command for the row searches them again.
SEARCHED = {"inputprune_fashion_mnist": {"method.lam"}, "inputprune_fashion_mnist_magnitude": {"schedule.end"}}
# What a row's command may add to the preset and the row's own overrides: where the data is, which seed, how the
# run is launched and kept, and the table's columns (method).
RUN_KEYS = {"data.root", "seed", "model.weights", "figures", "latency", "method"}


@pytest.fixture(scope="module")
def composer(tmp_path_factory):
    """compose(overrides) -> the config, composed and validated once per list of overrides; a preset that starts
    from given weights gets a stand-in file."""
    register_schemas()
    weights = tmp_path_factory.mktemp("weights") / "dense.pt"
    weights.touch()
    composed = {}
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        def run(overrides):
            key = tuple(overrides)
            if key not in composed:
                cfg = compose("train", overrides=list(overrides))
                if "weights" in cfg.model and cfg.model.weights is None and not cfg.model.get("pretrained") \
                        and not any(cfg[stage].epochs for stage in STAGES):
                    cfg = compose("train", overrides=[*overrides, f"model.weights={weights}"])
                validate(cfg, frozenset(override.partition("=")[0] for override in overrides))  # as the CLI does
                composed[key] = cfg
            return composed[key]
        yield run


def readme_commands() -> list[dict[str, list[str]]]:
    """Every `prunekit train` command in README that names a preset: each override's key -> its value(s)."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(path.read_text() for path in DOCS))
    commands = []
    for line in text.splitlines():
        words = line.split(" #")[0].split()
        if words[:2] == ["prunekit", "train"] and any(word.startswith("experiment=") for word in words):
            pairs = [word.partition("=") for word in words[2:] if "=" in word]
            commands.append({key: value.split(",") for key, _, value in pairs})
    return commands


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_composes_and_validates(composer, preset):
    cfg = composer([f"experiment={preset}"])
    assert PRESETS[preset], f"{preset} has no description line for `prunekit list`"
    assert cfg.method.name and cfg.data.name


@pytest.mark.parametrize("row", list(ROWS))
def test_each_readme_row_composes_to_the_setting_it_was_produced_with(composer, row):
    preset, overrides, expected = ROWS[row]
    cfg = composer([f"experiment={preset}", *overrides])
    found = {key: OmegaConf.select(cfg, key) for key in expected}
    assert {key: OmegaConf.to_object(v) if OmegaConf.is_config(v) else v for key, v in found.items()} == expected


@pytest.mark.parametrize("row", list(ROWS))
def test_readme_prints_each_rows_command_with_no_setting_beyond_the_rows_own(row):
    preset, overrides, _ = ROWS[row]
    wanted = [override.partition("=")[::2] for override in overrides]
    allowed = {key for key, _ in wanted} | RUN_KEYS | SEARCHED.get(preset, set())

    def reproduces(command):
        return command["experiment"] == [preset] and all(value in command.get(key, []) for key, value in wanted) \
            and all(key in allowed or key.startswith("hydra") for key in command if key != "experiment")
    assert any(reproduces(command) for command in readme_commands()), f"README has no command for {row}"


def test_readme_names_only_presets_that_exist():
    named = {value for command in readme_commands() for value in command["experiment"]}
    assert named and named <= set(PRESETS), named - set(PRESETS)


def test_every_baseline_preset_shares_its_method_presets_budget(composer):
    pairs = [(BASELINE.match(text).group(1), name) for name, text in PRESETS.items() if BASELINE.match(text)]
    assert len(pairs) >= 5 and all(method in PRESETS for method, _ in pairs)
    for method, baseline in pairs:
        a, b = composer([f"experiment={method}"]), composer([f"experiment={baseline}"])
        assert a.method.name != b.method.name and (a.data, a.model) == (b.data, b.model), baseline
        for stage in STAGES:
            # prune.lr is the one stage setting a method's validation search may choose
            same = [key for key in a[stage] if (stage, key) != ("prune", "lr")]
            assert {k: a[stage][k] for k in same} == {k: b[stage][k] for k in same}, f"{baseline}: {stage}"


def test_the_lrp_criteria_run_with_the_normalisation_their_tables_name(composer):
    preset, overrides, _ = ROWS["lrp subsets"]
    for name, criterion in CRITERIA.items():
        cfg = composer([f"experiment={preset}", *overrides, *criterion])
        assert (cfg.method.name, cfg.method.normalize) == (name, NORMALIZE[name])
