"""The runs of a study: every one checked before any starts, then run as ordinary ``prunekit train -m`` sweeps.

One sweep folder per arm and grid point, ``DIR/runs/<arm>/<point>``, holds the search runs (at the search seed)
and the chosen setting's replicates. A run's folder is named by what varies inside the sweep, its candidate's
settings and its seed (Hydra's ``override_dirname``, e.g. ``prune.lr=0.003,seed=1``), so a run keeps its
folder when the study gains a candidate or a seed: running the study again skips every finished run, resumes
an interrupted one and runs only what is new, as a sweep does (prunekit/sweeps.py).
"""
from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from prunekit.config import config_dir, register_schemas
from prunekit.data import check_available
from prunekit.errors import UserError
from prunekit.study.spec import Setting, Study, overrides, value_text
from prunekit.validation import validate

RUNS = "runs"


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def point_folder(point: Setting) -> str:
    """A folder name for a grid point: ``method.sparsity_0.9`` (no ``=``, which Hydra's overrides would split)."""
    return ",".join(f"{key}_{value_text(value)}" for key, value in point).replace("/", "-")


def sweep_dir(out: Path, arm: str, point: Setting) -> Path:
    return out / RUNS / arm / point_folder(point)


def check_runs(study: Study) -> None:
    """Compose and validate the config of every run the study may start (each candidate at the search seed, and
    each replicate seed), and check that each dataset is there: a mistake anywhere stops the study before any run."""
    register_schemas()
    seen_data = set()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="study"):
        for arm in study.cfg.arms:
            for point in study.points:
                candidates = study.candidates(arm)
                runs = [(c, study.cfg.search_seed) for c in candidates]
                runs += [(candidates[0], seed) for seed in study.replicate_seeds[1:]]
                for candidate, seed in runs:
                    job = [*study.fixed(arm, point), *overrides(candidate), f"seed={seed}"]
                    cfg = _compose(job, f"arm {arm!r} at {','.join(overrides(point))}")
                    data = OmegaConf.to_yaml(cfg.data)
                    if data not in seen_data:
                        seen_data.add(data)
                        check_available(cfg.data)


def _compose(job: list[str], where: str):
    try:
        cfg = compose("train", overrides=job, return_hydra_config=True)
    except Exception as err:  # Hydra's own errors (an unknown group choice, a bad override) are many-lined
        raise UserError(f"study: {where}: {str(err).splitlines()[0]}") from err
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    try:
        validate(cfg, frozenset(key_of(o) for o in job))
    except (UserError, OmegaConfBaseException) as err:  # e.g. a value left at ??? (mandatory)
        raise UserError(f"study: {where}: {str(err).splitlines()[0]}") from err
    return cfg


def sweep_command(study: Study, out: Path, arm: str, point: Setting, varying: list[str]) -> list[str]:
    """``prunekit train -m`` arguments for runs of ``arm`` at ``point``: the shared overrides, then ``varying``
    (the candidate's settings and the seed, which name each run's folder)."""
    fixed = study.fixed(arm, point)
    hidden = sorted({key_of(o) for o in fixed if "/" not in key_of(o)}  # hydra/launcher=... is Hydra's own
                    | {"resume"})  # the sweeper continues an interrupted run with resume=true, in its own folder
    folder = str(sweep_dir(out, arm, point)).replace("'", "\\'")
    return ["train", "-m", *fixed, *varying, f"hydra.sweep.dir='{folder}'",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            f"hydra.job.config.override_dirname.exclude_keys=[{','.join(hidden)}]"]


def search_overrides(study: Study, arm: str) -> list[str]:
    """The arm's search space as sweep overrides (``prune.lr=0.003,0.03``) and the search seed."""
    space = study.cfg.arms[arm].search
    return [f"{key}={','.join(value_text(v) for v in values)}" for key, values in space.items()] + \
        [f"seed={study.cfg.search_seed}"]


def find_run(folder: Path, candidate: Setting, seed: int) -> Path | None:
    """The run below ``folder`` of ``candidate`` at ``seed``, read from each run's .hydra/overrides.yaml."""
    wanted = {*overrides(candidate), f"seed={seed}"}
    for path in sorted(folder.glob("*/.hydra/overrides.yaml")) if folder.is_dir() else []:
        given = {re.sub(r"^\+*", "", item) for item in OmegaConf.load(path)}
        if wanted <= given:
            return path.parent.parent
    return None
