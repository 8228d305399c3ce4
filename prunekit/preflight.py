"""Checks made before Hydra starts a run: every job of a sweep is composed and validated first, so a
typo in the fifth value of a sweep fails at once, with one line, and leaves nothing behind.

The pre-flight also decides where every job writes. It resolves the run (or sweep) directory once, so
that a time-stamped path cannot move between this check and Hydra's own resolution, and hands back an
override that pins it, together with the state each output directory was in (prunekit/ownership.py).
Once every job is valid, the command locks the run's directory, or the sweep's (prunekit/runlock.py),
and only then decides what it finds there: a second command into it is refused before anything is written.
"""
from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from prunekit.config import config_dir, register_schemas
from prunekit.data import check_available
from prunekit.errors import UserError, warn
from prunekit.ownership import SWEEP_OUTPUTS, OutputDir, require_directory_path
from prunekit.pipeline import load_resume_state
from prunekit.rundir import RunDir
from prunekit.runlock import hold, release, terminate_as_interrupt
from prunekit.sweeps import FRESH, RESTART, clear_attempt, decide, job_status, sweep_jobs
from prunekit.validation import validate


@dataclass
class Plan:
    """What a checked command will do: the overrides to hand Hydra and the directories it writes."""

    overrides: list[str]
    jobs: list[OutputDir]  # one per job, in launch order
    sweep: OutputDir | None  # the sweep's own directory (multirun only)


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
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options")) + 1
        end = next((i for i, line in enumerate(lines) if line.startswith("Config search path")), len(lines))
        return f"{lines[0]}; choose one of: {', '.join(lines[start:end])}"
    message = lines[0] if lines else type(err).__name__
    if message.startswith("Ambiguous value for argument"):
        bad = message.split("'", 1)[1].rstrip("'")
        return f"{bad} gives several values; add -m to sweep over them (prunekit train -m {bad})"
    cause = err.__cause__
    if cause is not None:
        message += " " + str(cause).splitlines()[0]
    if "Could not override" in message:
        bad = message.split("'")[1]
        keys = _available_keys(bad, [o for o in overrides if "." not in o.split("=", 1)[0]])
        if keys:
            message += f"; keys there: {keys}"
    return message


def parse_each(overrides: list[str]) -> None:
    """Parse the overrides one by one, so that a syntax error names the override it is in."""
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except HydraException as err:
            reason = str(err).splitlines()[0]
            raise UserError(f"cannot read the override {override!r}: {reason}") from err


def _compose(job: list[str]) -> DictConfig:
    try:
        return compose("train", overrides=job, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(_one_line(err, job)) from err


def check_booleans(cfg: DictConfig, job: list[str]) -> None:
    """Refuse a number other than 0 or 1 given to an on/off option: OmegaConf would read ``figures=2`` as true
    without a word, and a typo for another key's value should not switch an option on."""
    for override in OverridesParser.create().parse_overrides(job):
        value = override.value()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value in (0, 1):
            continue
        if isinstance(OmegaConf.select(cfg, override.key_or_group, default=None), bool):
            raise UserError(f"{override.key_or_group}={value} is not an on/off value; give true or false")


def _output_dir(cfg: DictConfig, number: int | None, sweep_dir: str | None) -> tuple[Path, str]:
    """A job's directory and the option that names it, resolved as Hydra's launcher will resolve it."""
    if number is None:
        return Path(cfg.hydra.run.dir), "hydra.run.dir"
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.job.num = cfg.hydra.job.id = number
    return Path(sweep_dir) / str(cfg.hydra.sweep.subdir), "hydra.sweep.dir/subdir"


def _directory(value: object, key: str) -> str:
    """The value of option ``key``, a directory; UserError when it is empty, which Hydra would take for the
    current folder."""
    if not str(value).strip():
        raise UserError(f"{key} is empty; give the directory to write to")
    return str(value)


def _pin(key: str, value: str) -> str:
    """An override that sets ``key`` to the literal ``value`` (quoted for Hydra's grammar)."""
    return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _take_up_run(cfg: DictConfig, output: OutputDir, key: str) -> None:
    """A single run's directory, once locked: resumed, empty, or holding only the first files of an attempt
    of the same config that ended before its first checkpoint (kill -9, a crash: nothing cleaned up after
    it), which are removed and the run starts again, as a sweep's job would; anything else is refused."""
    if cfg.resume:
        load_resume_state(cfg, RunDir(output.path))
        return
    try:
        status = job_status(output.path, cfg, 0)
    except UserError:  # a run of another config, or files without its record: refused below, untouched
        status = None
    if status == RESTART:
        clear_attempt(output.path)
        warn(f"{key}={output.path} held an attempt of this run that ended before its first checkpoint; "
             "starting it again")
    elif status != FRESH:
        output.refuse_reuse(key)


def _claim(output: OutputDir, key: str, check: Callable[[], None]) -> None:
    """Lock ``output``'s directory for this command, then ``check`` what is in it; on a refusal let go and
    remove the directories the lock made. From here on SIGTERM ends the command as Ctrl-C does."""
    terminate_as_interrupt()
    try:
        hold(output.path, key)
        check()
    except BaseException:
        release(output.path)
        output.remove_created()
        raise


def preflight(overrides: list[str], multirun: bool, writes: bool = True) -> Plan:
    """Compose and validate every job and inspect its output directory (unless the command ``writes``
    nothing, e.g. ``--cfg job``); raise UserError on the first bad one. Then lock the run's or the sweep's
    directory (:func:`_claim`): nothing but the lock is written before Hydra starts, and nothing is deleted
    but an abandoned attempt of the same run (:func:`_take_up_run`) or of a sweep's job (:func:`decide`),
    whose decisions the sweeper is handed: each job is composed here once, and its directory inspected once."""
    register_schemas()
    checked, sweep, pins, planned = [], None, [], False
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="train"):
        parse_each(overrides)
        for number, job in enumerate(sweep_jobs(overrides) if multirun else [overrides]):
            cfg = _compose([*job, *pins])
            check_booleans(cfg, job)
            if multirun and sweep is None:
                sweep_dir = _directory(cfg.hydra.sweep.dir, "hydra.sweep.dir")
                pins = [_pin("hydra.sweep.dir", sweep_dir)]
                planned = "plan" in cfg.hydra.sweeper  # prunekit's sweeper, which launches what is decided here
                sweep = OutputDir.inspect(Path(sweep_dir), "hydra.sweep.dir", SWEEP_OUTPUTS)
                if writes:
                    sweep.refuse_other_kind("hydra.sweep.dir")
            elif not multirun:
                pins = [_pin("hydra.run.dir", _directory(cfg.hydra.run.dir, "hydra.run.dir"))]
            path, key = _output_dir(cfg, number if multirun else None, sweep.path if sweep else None)
            output = OutputDir.inspect(path, key)
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]
            validate(cfg, frozenset(o.split("=", 1)[0].lstrip("+~") for o in job))
            check_available(cfg.data)
            require_directory_path(Path(cfg.cache_dir).expanduser(), "cache_dir")
            if not writes:
                continue
            if multirun and cfg.resume:
                raise UserError("resume=true is for a single run; a sweep continues by itself when the same -m "
                                "command runs again with the same hydra.sweep.dir")
            if not multirun:
                output.refuse_other_kind(key)
                _claim(output, key, partial(_take_up_run, cfg, output, key))
            checked.append((output, cfg))

    def decide_jobs() -> None:  # once the sweep is locked, so that no other command changes a job meanwhile
        decisions = decide(checked)
        pins.extend([f"hydra.sweeper.plan=[{','.join(decisions)}]"] if planned else [])

    if writes and multirun:
        _claim(sweep, "hydra.sweep.dir", decide_jobs)
    return Plan([*overrides, *pins], [output for output, _ in checked], sweep)


def resume_command(task_overrides: list[str], run_dir: Path) -> str:
    """The shell command that continues the run in ``run_dir`` started with ``task_overrides``."""
    kept = [o for o in task_overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "hydra.run.dir")]
    return shlex.join(["prunekit", "train", *kept, "resume=true", f"hydra.run.dir={run_dir}"])
