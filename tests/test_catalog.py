"""`prunekit list`: printed from the registries, every entry once, and one entry's options with their allowed
values, as validation reads them."""
from __future__ import annotations

from prunekit.catalog import catalog, options
from prunekit.data.registry import DATASETS
from prunekit.models import MODELS
from prunekit.pruning.methods import method_names
from prunekit.pruning.schedules import SCHEDULES


def test_the_list_is_the_registries():
    listed = {group: [name for name, _ in rows] for group, rows in catalog().items()}
    assert listed["method"] == method_names() and {"gumbel", "magnitude", "lrp"} <= set(listed["method"])
    assert listed["dataset"] == DATASETS.names() and listed["model"] == MODELS.names()
    assert listed["schedule"] == SCHEDULES.names()
    assert {"units_kept", "relevance_maps", "interpretability"} <= set(listed["figure"])
    assert all(text and "\n" not in text for rows in catalog().values() for _, text in rows)


def test_one_entrys_options_show_its_composed_values_and_the_schemas_allowed_values():
    rows = {key: (value, allowed) for key, value, allowed in options("method", "gumbel")}
    assert rows["method.sparsity"] == ("0.98", "[0, 1)")  # the YAML file's value, the schema's range
    assert rows["method.target"][1] == "scheduled, emergent"
    assert rows["method.granularity"][1] == "weight, unit, input"
    inputprune = {key: allowed for key, _, allowed in options("method", "inputprune")}
    assert inputprune["method.scope"] == "auto, global, layer"  # a subclass's new default keeps the base's choices


def test_listing_an_unknown_entry_is_one_line(cli):
    code, _, err = cli("list", "method=nope")
    assert code == 2 and "method='nope' is unknown" in err and "magnitude" in err
    code, out, _ = cli("list", "model=cnn")
    assert code == 0 and "model.blocks" in out and "model.hidden" in out
