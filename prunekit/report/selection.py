"""Settings chosen on the validation split, never on test (``prunekit report --choose KEY[,KEY]``).

The tuned keys (say ``prune.lr``) are searched within every combination of the other settings that vary
(say method and sparsity): the value whose runs reach the best mean validation accuracy over seeds is
chosen, and the table shows the test accuracy of that choice alone, with how many candidates there were.
Test accuracy takes no part in the choice; a baseline gets the same search as the method when both are
swept over the same tuned keys.
"""
from __future__ import annotations

from prunekit.errors import UserError
from prunekit.report.groups import Group, show_value, sort_key
from prunekit.report.metrics import ACCURACY, DENSITY, Metric
from prunekit.report.tables import SEEDS_NOTE, Table

VAL_ACCURACY = Metric("val_accuracy", "val accuracy (%)", 100.0, ".2f")


def chosen_table(groups: list[Group], keys: list[str], tuned: list[str]) -> Table:
    """One row per combination of the keys that vary but are not tuned: the tuned values chosen by mean
    validation accuracy, the candidates searched, and the chosen setting's validation and test accuracy."""
    compared = [key for key in keys if key not in tuned]
    candidates: dict[tuple, list[Group]] = {}
    for group in groups:
        candidates.setdefault(tuple(group.value(key) for key in compared), []).append(group)
    rows = []
    for cell in sorted(candidates, key=lambda cell: [sort_key(v) for v in cell]):
        scored = [(VAL_ACCURACY.of(group), group) for group in candidates[cell]]
        scored = [(estimate.mean, group) for estimate, group in scored if estimate is not None]
        if not scored:
            raise UserError(f"--choose needs val_accuracy in summary.json; the runs of {cell} have none")
        best = max(scored, key=lambda pair: pair[0])[1]
        rows.append([show_value(v) for v in cell] + [show_value(best.value(key)) for key in tuned]
                    + [str(len(scored)), VAL_ACCURACY.of(best), ACCURACY.of(best), DENSITY.of(best)])
    title = (f"{', '.join(tuned)} chosen by mean validation accuracy for each {', '.join(compared) or 'run'}; "
             f"test accuracy of the chosen setting only, {SEEDS_NOTE}")
    header = compared + [f"chosen {key}" for key in tuned] + ["candidates", VAL_ACCURACY.label, ACCURACY.label,
                                                              DENSITY.label]
    return Table(title, header, len(compared) + len(tuned) + 1, rows)
