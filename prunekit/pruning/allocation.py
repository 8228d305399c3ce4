"""How much of each layer goes: one pruning step turns a method's scores into masks.

Candidates are weights, input features, or, at unit granularity, the channels of coupled groups (a group's
score per channel reduces its producers' unit scores, prunekit/pruning/coupling.py). A step at ``level`` keeps
them by one of three allocations, chosen by the method config:

- ``method.sparsity``: that fraction of the candidates goes, ranked globally or per layer (selection.py);
- ``method.target_flops`` / ``method.target_params``: the level is the fraction of the dense cost removed so
  far, and the lowest-ranked candidates go until the network costs at most what is left (budget.py);
- ``method.layer_sparsity``: explicit fractions per layer (a mapping, or a YAML file of one such as
  ``prunekit sensitivity`` writes); every layer moves the same share of the way to its own fraction, and a layer
  not named keeps all of its candidates.

``method.round_to=N`` keeps every group's channel count at a multiple of N; ``method.pattern=N:M`` (weights) keeps
the best N of every M consecutive weights of a row instead of any of the three (patterns.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from prunekit.errors import UserError
from prunekit.pruning.budget import Bucket, CostModel, blocks, keep_to_budget
from prunekit.pruning.coupling import group_scores
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.patterns import n_of_m, pattern_of
from prunekit.pruning.selection import layer_floor, normalised, resolved_scope, select_groups, top_k


def budget(cfg: DictConfig) -> tuple[str, float] | None:
    """``("flops", F)`` or ``("params", P)`` when the method config sets a budget, else None."""
    for kind in ("flops", "params"):
        if cfg.get(f"target_{kind}") is not None:
            return kind, float(cfg[f"target_{kind}"])
    return None


def layer_ratios(cfg: DictConfig) -> dict[str, float] | None:
    """``method.layer_sparsity`` as {layer: fraction}: the mapping given, or the one in the YAML file it names."""
    given = cfg.get("layer_sparsity")
    if given is None:
        return None
    if isinstance(given, str):
        given = read_ratio_file(given)
    elif isinstance(given, DictConfig):
        given = OmegaConf.to_container(given)
    if not isinstance(given, dict) or not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in given.values()):
        raise UserError(f"method.layer_sparsity={cfg.layer_sparsity} is not allowed; give {{layer: fraction}} "
                        "with fractions in [0, 1), or a YAML file of such a mapping")
    return {str(name): float(value) for name, value in given.items()}


def read_ratio_file(path: str) -> object:
    """The contents of the YAML file ``method.layer_sparsity`` names (safe_load: plain data only)."""
    try:
        return yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"method.layer_sparsity={path}: cannot read it as a YAML file ({type(err).__name__}: "
                        f"{getattr(err, 'strerror', None) or err})") from err


class Allocation:
    """The allocation of one method config (``cfg``) over the network of ``masks``."""

    def __init__(self, cfg: DictConfig, masks: MaskSet):
        self.cfg, self.masks = cfg, masks
        self.budget, self.pattern = budget(cfg), pattern_of(cfg)
        self.cost = CostModel(masks, self.budget[0]) if self.budget is not None else None
        ratios = layer_ratios(cfg)
        self.ratios = self.bucket_ratios(ratios) if ratios is not None else None

    def bucket_ratios(self, ratios: dict[str, float]) -> dict[str, float]:
        """``method.layer_sparsity`` by bucket: a layer that writes a coupled group names the group. A name that is
        no prunable layer of this granularity, or two fractions for one group, is one line."""
        granularity = self.cfg.granularity
        if granularity == "unit":
            owner = {layer: g.name for g in self.masks.channel_groups() for layer in g.producers}
        else:
            owner = {name: name for name in self.masks.groups_alive(granularity)}
        by_bucket: dict[str, float] = {}
        for name, ratio in ratios.items():
            if name not in owner:
                raise UserError(f"method.layer_sparsity names {name!r}, which is not a prunable layer at "
                                f"granularity {granularity}; layers: {', '.join(owner)}")
            if by_bucket.setdefault(owner[name], ratio) != ratio:
                raise UserError(f"method.layer_sparsity gives {name!r} {ratio:g}, but it writes the same channels "
                                f"as {owner[name]!r} (a coupled group), which has {by_bucket[owner[name]]:g}")
        return by_bucket

    def candidates(self, granularity: str, scores: dict[str, torch.Tensor] | None = None):
        """Per bucket (a coupled group at unit granularity, else a layer): alive candidates, and ``scores`` mapped
        onto them when given."""
        if granularity != "unit":
            return self.masks.groups_alive(granularity), scores
        groups = self.masks.channel_groups()
        mapped = group_scores(groups, scores, self.cfg.group_reduction) if scores is not None else None
        return self.masks.channels_alive(), mapped

    def buckets(self, granularity: str) -> dict[str, Bucket]:
        """What removing one candidate of each bucket takes away (for the cost model)."""
        if granularity == "unit":
            return {g.name: Bucket(tuple(g.producers), {n: p.shape[1] for n, p in g.consumers.items()})
                    for g in self.masks.channel_groups()}
        first = self.masks.names[0]
        return {first: Bucket((), {first: 1})}

    def check_reachable(self) -> None:
        """Refuse (one line) a budget that the floors make unreachable: what they keep already costs more."""
        kind, fraction = self.budget
        granularity = self.cfg.granularity
        alive, _ = self.candidates(granularity)
        order = blocks({k: torch.zeros(a.shape) for k, a in alive.items()}, alive, self.floors(alive, granularity),
                       "global", self.cfg.round_to if granularity == "unit" else 1)
        removed: dict[str, int] = {}
        for key, block in order:
            removed[key] = removed.get(key, 0) + len(block)
        lowest = self.cost.cost(self.cost.sizes(self.masks), self.buckets(granularity), removed) / self.cost.dense
        if lowest > fraction:
            raise UserError(f"method.target_{kind}={fraction:g} cannot be reached: with method.min_keep="
                            f"{self.cfg.min_keep:g} every layer keeps its floor, which alone costs {lowest:.4g} of the "
                            f"dense {kind}; lower method.min_keep or raise the target")

    def floors(self, alive: dict[str, torch.Tensor], granularity: str) -> dict[str, int]:
        """Each bucket's floor (``method.min_keep``), raised to a multiple of ``method.round_to`` for units."""
        step = self.cfg.round_to if granularity == "unit" else 1
        return {k: min(math.ceil(layer_floor(self.cfg.min_keep, a.numel()) / step) * step, int(a.sum()))
                for k, a in alive.items()}

    def prune(self, granularity: str, scores: dict[str, torch.Tensor], level: float) -> None:
        """Tighten the masks of ``granularity`` to ``level`` (see the module docstring) by ``scores`` (per layer,
        shaped as ``masks.groups_alive(granularity)``, higher is kept), after ``method.normalize``."""
        alive, mapped = self.candidates(granularity, scores)
        mapped = normalised(mapped, self.cfg.normalize)
        scope = resolved_scope(self.cfg.scope, granularity)
        if self.pattern is not None:
            keep = {k: n_of_m(mapped[k], a, self.pattern) for k, a in alive.items()}
        elif self.budget is not None:
            order = blocks(mapped, alive, self.floors(alive, granularity), scope,
                           self.cfg.round_to if granularity == "unit" else 1)
            keep = keep_to_budget(self.cost, self.masks, self.buckets(granularity), alive, order, 1 - level)
        else:
            if self.ratios is not None:
                share = level / max(*self.ratios.values(), level, 1e-12)
                keep = {k: top_k(mapped[k].flatten(), a.flatten(), self._quota(k, a, share)).view_as(a)
                        for k, a in alive.items()}
            else:
                keep = select_groups(mapped, alive, level, scope, self.cfg.min_keep)
            if granularity == "unit" and self.cfg.round_to > 1:
                keep = {k: top_k(mapped[k], alive[k], self._rounded(int(kept.sum()), alive[k]))
                        for k, kept in keep.items()}
        if granularity == "unit":
            self.masks.set_channels(keep)
        else:
            self.masks.set_groups(granularity, keep)

    def _quota(self, key: str, alive: torch.Tensor, share: float) -> int:
        """Candidates a bucket keeps at ``share`` of the way to its fraction in ``method.layer_sparsity``."""
        ratio = self.ratios.get(key, 0.0)
        return max(round((1 - share * ratio) * alive.numel()), layer_floor(self.cfg.min_keep, alive.numel()))

    def _rounded(self, count: int, alive: torch.Tensor) -> int:
        """``count`` rounded to the nearest multiple of ``method.round_to`` (at least one multiple), at most the
        channels alive."""
        step = self.cfg.round_to
        return min(max(round(count / step), 1) * step, int(alive.sum()))
