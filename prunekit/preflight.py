"""Checks made before Hydra starts a run: every job of a sweep is composed and validated first, so a
typo in the fifth value of a sweep fails at once, with one line, and leaves nothing behind."""
from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from prunekit.config import config_dir, register_schemas, validate
from prunekit.errors import UserError


def _available_keys(failing: str, group_choices: list[str]) -> str:
    """The keys that exist beside a misspelt one, e.g. 'name, sparsity, granularity, scope'."""
    parent = failing.lstrip("+~").split("=", 1)[0].rsplit(".", 1)[0]
    try:
        node = OmegaConf.select(compose("train", overrides=group_choices), parent)
    except (HydraException, OmegaConfBaseException):
        return ""
    return ", ".join(node.keys()) if isinstance(node, DictConfig) else ""


def _one_line(err: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line composition errors, folded into one line that names what is allowed."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if any(line.startswith("Available options") for line in lines):
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options"))
        return f"{lines[0]}; choose one of: {', '.join(lines[start + 1:])}"
    message = lines[0] if lines else type(err).__name__
    cause = err.__cause__
    if cause is not None:
        message += " " + str(cause).splitlines()[0]
    if "Could not override" in message:
        bad = message.split("'")[1]
        keys = _available_keys(bad, [o for o in overrides if "." not in o.split("=", 1)[0]])
        if keys:
            message += f"; keys there: {keys}"
    return message


def jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job the command would launch."""
    if not multirun:
        return [overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(str(err).splitlines()[0]) from err
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def preflight(overrides: list[str], multirun: bool) -> None:
    """Compose and validate every job; raise UserError on the first bad one."""
    from prunekit.data import check_available
    from prunekit.pipeline import load_resume_state
    from prunekit.rundir import RunDir

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="train"):
        for job in jobs(overrides, multirun):
            try:
                cfg = compose("train", overrides=job, return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as err:
                raise UserError(_one_line(err, job)) from err
            run_dir = cfg.hydra.run.dir
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]
            validate(cfg)
            check_available(cfg.data)
            if cfg.resume and not multirun:
                load_resume_state(cfg, RunDir(run_dir))
