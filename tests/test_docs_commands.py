"""Every `prunekit train` command printed in README.md composes and passes validation: the docs stay true.

A sweep is checked value by value (the first value of every swept key, then each other value of one key at a
time), not as its whole product: a bad value shows either way, at a fraction of the compositions.
"""
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict, read_write

from prunekit.config import config_dir, register_schemas
from prunekit.validation import validate

DOCS = [Path(__file__).resolve().parent.parent / "README.md"]
SKIPPED_ARGS = ("-m", "--multirun", "--cfg", "job")  # how a command runs, not what it composes


def train_commands(path: Path) -> list[str]:
    """The `prunekit train` commands of the indented code blocks of ``path``, continuation lines joined."""
    lines, commands = path.read_text().splitlines(), []
    for index, line in enumerate(lines):
        if not line.startswith("    prunekit train"):
            continue
        command = line.strip()
        while command.endswith("\\"):
            index += 1
            command = command[:-1] + " " + lines[index].strip()
        commands.append(command)
    return commands


def jobs(command: str) -> list[list[str]]:
    """The overrides of the jobs that check ``command``: every swept key at its first value, then each other
    value of one swept key at a time."""
    overrides = [arg for arg in shlex.split(command, comments=True)[2:] if arg not in SKIPPED_ARGS]
    parsed = OverridesParser.create().parse_overrides(overrides)
    base = [o.input_line if not o.is_sweep_override() else f"{o.get_key_element()}={next(o.sweep_string_iterator())}"
            for o in parsed]
    variants = [base]
    for position, override in enumerate(parsed):
        if override.is_sweep_override():
            for value in list(override.sweep_string_iterator())[1:]:
                variants.append([*base[:position], f"{override.get_key_element()}={value}", *base[position + 1:]])
    return variants


COMMANDS = [command for path in DOCS for command in train_commands(path)]


def test_the_docs_hold_the_commands_they_are_meant_to():
    assert len(COMMANDS) >= 30 and "prunekit train method=gumbel" in COMMANDS


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: re.sub(r"\s+", " ", c)[15:70])
def test_every_documented_train_command_composes_and_validates(command, monkeypatch):
    # The files the commands name (a dense.pt from an earlier step, a dataset folder) need not exist here:
    # what is checked is that every key and value is one prunekit accepts.
    monkeypatch.setattr("prunekit.models.weights.check_request", lambda model: None)
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="train"):
        for job in jobs(command):
            cfg = compose("train", overrides=job, return_hydra_config=True)
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]
            validate(cfg, frozenset(o.split("=", 1)[0].lstrip("+~") for o in job))
