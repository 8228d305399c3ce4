"""Keeping some classes of a dataset: ``data.classes=[3,5,7]`` or ``data.class_subset=K``.

``data.classes`` keeps the classes with those labels, relabelled 0..K-1 in the order given;
``data.class_subset=K`` draws K classes with the run's seed and relabels them in increasing order. Both keep
the train and the test images of those classes only; the validation split is carved from what is kept.
The kept classes' labels in the full dataset travel with the data (``Source.classes``, ``Dataset.classes``),
so that a classifier trained on more classes can keep exactly their rows (prunekit/models/weights.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from prunekit import rng
from prunekit.data.source import Source
from prunekit.errors import UserError


@dataclass(frozen=True)
class ClassPick:
    """The classes a data node asks for; :meth:`resolve` turns it into labels once the dataset's size is known."""

    dataset: str
    given: tuple[int, ...] | None  # data.classes
    subset: int | None  # data.class_subset
    seed: int  # draws the subset

    @classmethod
    def from_config(cls, cfg: DictConfig, seed: int) -> ClassPick:
        """The selection of the data node ``cfg``, checked as far as it can be without the data (both options
        set, fewer than two classes, a class named twice); ``seed`` is the run's seed."""
        given = cfg.get("classes")
        given = tuple(int(label) for label in given) if given is not None else None
        subset = cfg.get("class_subset")
        if given is not None and subset is not None:
            raise UserError(
                f"data.classes={list(given)} and data.class_subset={subset} both choose classes; set one of them"
            )
        if given is not None and len(given) < 2:
            raise UserError(f"data.classes={list(given)} keeps fewer than two classes; a classifier needs two or more")
        repeated = sorted({label for label in given if given.count(label) > 1}) if given is not None else []
        if repeated:
            raise UserError(
                f"data.classes={list(given)} names class {repeated[0]} more than once; give each class once"
            )
        return cls(cfg.name, given, subset, seed)

    @property
    def active(self) -> bool:
        """Whether only some classes are kept."""
        return self.given is not None or self.subset is not None

    def resolve(self, num_classes: int) -> list[int] | None:
        """The labels, in a dataset of ``num_classes`` classes, of the kept classes in the order of their new
        labels 0..K-1; None when every class is kept."""
        if self.given is not None:
            outside = [label for label in self.given if label >= num_classes]
            if outside:
                raise UserError(
                    f"data.classes={list(self.given)} names class {outside[0]} but {self.dataset} has classes "
                    f"0..{num_classes - 1}"
                )
            return list(self.given)
        if self.subset is not None:
            if self.subset > num_classes:
                raise UserError(
                    f"data.class_subset={self.subset} but {self.dataset} has only {num_classes} classes; "
                    f"choose at most {num_classes}"
                )
            # A generator of its own: the draw depends on (seed, K, number of classes) only, not on what ran before.
            generator = torch.Generator().manual_seed(rng.fold(self.seed))
            drawn = torch.randperm(num_classes, generator=generator)[: self.subset]
            return sorted(drawn.tolist())
        return None

    def apply(self, source: Source) -> Source:
        """``source`` with only the kept classes' samples, relabelled, and the kept labels recorded."""
        classes = self.resolve(source.num_classes)
        if classes is None:
            return source
        kept = torch.tensor(classes, dtype=torch.long)
        relabel = torch.full((source.num_classes,), -1, dtype=torch.long)
        relabel[kept] = torch.arange(len(classes))

        def keep(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            chosen = torch.isin(y, kept)
            return x[chosen], relabel[y[chosen]]

        train_x, train_y = keep(source.train_x, source.train_y)
        test_x, test_y = keep(source.test_x, source.test_y)
        return dataclasses.replace(
            source, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, num_classes=len(classes),
            classes=classes, total_classes=source.num_classes,
        )
