"""The docs stay true: every `prunekit train` command printed in README.md or a page under docs/ composes and
passes validation, every `prunekit report` and `python scripts/...` command names options that exist, and
every relative link points to a file (and heading) that exists.

A sweep is checked value by value (the first value of every swept key, then each other value of one key at a
time), not as its whole product: a bad value shows either way, at a fraction of the compositions. Commands
that read files absent here (a dense.pt from an earlier step, a dataset folder) are composed and validated
only, as `--cfg job` would; nothing runs.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict, read_write

from conftest import hand_installed
from prunekit.config import config_dir, register_schemas
from prunekit.validation import validate

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
SKIPPED_ARGS = ("-m", "--multirun", "--cfg", "job")  # how a command runs, not what it composes
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), not an image
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
INLINE = re.compile(r"`([^`\n]+)`")


def code_lines(path: Path) -> list[str]:
    """The lines of the code blocks of ``path`` (indented by four spaces, or fenced), continuation lines joined
    and a shell prompt (`$ `) dropped."""
    lines, out, fenced, index = path.read_text().splitlines(), [], False, 0
    while index < len(lines):
        line = lines[index]
        if FENCE.match(line):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            command = line.strip().removeprefix("$ ")
            while command.endswith("\\") and index + 1 < len(lines):
                index += 1
                command = command[:-1] + " " + lines[index].strip()
            out.append(command)
        index += 1
    return out


def commands(tool: str, inline: bool = False) -> list[tuple[str, str]]:
    """(file, command) for every code-block line of the docs that starts with ``tool``, and with ``inline`` every
    inline code span too (not for `prunekit train`: the prose shows mistakes that way, on purpose)."""
    found = []
    for path in DOCS:
        spans = INLINE.findall(path.read_text()) if inline else []
        found += [(str(path.relative_to(ROOT)), line) for line in [*code_lines(path), *spans] if line.startswith(tool)]
    return found


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


def options(command: str) -> list[str]:
    """The `--options` of a command line (before any `#` comment), without their values."""
    return [arg.split("=", 1)[0] for arg in shlex.split(command, comments=True) if arg.startswith("--")]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (a repeated heading gets -1, -2, ... as on GitHub)."""
    found, count, fenced = set(), {}, False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            base = slug(match.group(1))
            found.add(f"{base}-{count[base]}" if base in count else base)
            count[base] = count.get(base, 0) + 1
    return found


PLUGIN = "method=example"  # docs/extending.md's plug-in: composed where it is installed (below)
TRAIN = [(where, command) for where, command in commands("prunekit train ") if PLUGIN not in command]
WITH_PLUGIN = [(where, command) for where, command in commands("prunekit train ") if PLUGIN in command]
REPORT = commands("prunekit report ", inline=True)
STUDY = commands("prunekit study ")
SCRIPTS = commands("python scripts/", inline=True)
LINKS = [(path, target) for path in DOCS for target in LINK.findall(path.read_text())
         if not re.match(r"[a-z]+:", target)]  # http:, https:, mailto: are not files of this repository


def test_the_docs_hold_the_commands_they_are_meant_to():
    assert {path.name for path in DOCS} >= {"README.md", "index.md", "concepts.md", "configuration.md"}
    assert len(TRAIN) >= 30 and ("README.md", "prunekit train method=gumbel") in TRAIN
    assert REPORT and SCRIPTS and LINKS and WITH_PLUGIN and STUDY


def _compose_and_validate(jobs_: list[list[str]], monkeypatch) -> None:
    # The files the commands name (a dense.pt from an earlier step, a dataset folder) need not exist here:
    # what is checked is that every key and value is one prunekit accepts.
    monkeypatch.setattr("prunekit.models.weights.check_request", lambda model: None)
    monkeypatch.setattr("prunekit.pruning.allocation.read_ratio_file", lambda path: {"features.0": 0.5})
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="train"):
        for job in jobs_:
            cfg = compose("train", overrides=job, return_hydra_config=True)
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]
            validate(cfg, frozenset(o.split("=", 1)[0].lstrip("+~") for o in job))


def _ids(found: list[tuple[str, str]]) -> list[str]:
    return [where + ":" + " ".join(command.split())[15:70] for where, command in found]


SWEPT = [(where, command) for where, command in TRAIN if len(jobs(command)) > 1]


@pytest.mark.parametrize("where,command", TRAIN, ids=_ids(TRAIN))
def test_every_documented_train_command_composes_and_validates(where, command, monkeypatch):
    """One composition per command (a sweep at its first values), so the fast tests catch a stale key."""
    _compose_and_validate(jobs(command)[:1], monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("where,command", SWEPT, ids=_ids(SWEPT))
def test_every_other_swept_value_composes_and_validates(where, command, monkeypatch):
    _compose_and_validate(jobs(command)[1:], monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("where,command", WITH_PLUGIN, ids=_ids(WITH_PLUGIN))
def test_every_documented_command_of_the_example_plug_in_composes_where_it_is_installed(where, command, tmp_path):
    site = hand_installed(tmp_path / "site", "prunekit_example", ROOT / "examples" / "plugin" / "prunekit_example")
    env = {**os.environ, "PYTHONPATH": str(site), "PRUNEKIT_CACHE": str(tmp_path / "cache")}
    for job in jobs(command):
        result = subprocess.run([sys.executable, "-m", "prunekit", "train", *job, "--cfg", "job"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{where}: {' '.join(job)}: {result.stderr}"


def _study(command: str):
    from prunekit.study.spec import load_study

    words = [word for word in shlex.split(command, comments=True)[2:] if word != "--out"]
    return load_study(words[0], [word for word in words[1:] if "=" in word])


@pytest.mark.parametrize("where,command", STUDY, ids=_ids(STUDY))
def test_every_documented_study_exists_and_is_well_formed(where, command):
    assert _study(command).cfg.arms


@pytest.mark.slow
@pytest.mark.parametrize("where,command", STUDY, ids=_ids(STUDY))
def test_every_run_of_every_documented_study_composes_and_validates(where, command, monkeypatch):
    from prunekit.study.runs import check_runs

    # The data and the files the study names (a dense.pt of an earlier step) need not be here.
    monkeypatch.setattr("prunekit.study.runs.check_available", lambda data: None)
    monkeypatch.setattr("prunekit.models.weights.check_request", lambda model: None)
    check_runs(_study(command))


def test_every_documented_report_option_exists():
    source = "".join(path.read_text() for path in (ROOT / "prunekit").glob("report/**/*.py"))
    for where, command in REPORT:
        for option in options(command):
            assert f'"{option}"' in source, f"{where}: `prunekit report {option}` is no option of prunekit report"


def test_every_documented_script_exists_with_its_options():
    for where, command in SCRIPTS:
        script = ROOT / shlex.split(command)[1]
        assert script.is_file(), f"{where}: {script.relative_to(ROOT)} does not exist"
        source = script.read_text()
        for option in options(command):
            assert f'"{option}"' in source, f"{where}: {script.name} has no option {option}"


@pytest.mark.parametrize("path,target", LINKS, ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v)
def test_every_relative_link_points_to_a_file_and_heading_that_exist(path, target):
    file, _, anchor = target.partition("#")
    linked = (path.parent / file).resolve() if file else path
    assert linked.exists(), f"{path.relative_to(ROOT)} links to {target}, which does not exist"
    if anchor and linked.suffix == ".md":
        assert anchor in anchors(linked), f"{path.relative_to(ROOT)} links to {target}: no such heading"


def _fields(schema, prefix: str = "") -> dict[str, dict]:
    """Option key -> its field's metadata, nested dataclasses (data.augment, cudnn) spelt out."""
    import dataclasses

    found = {}
    for field in dataclasses.fields(schema):
        made = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(made):
            found.update(_fields(type(made), f"{prefix}{field.name}."))
        else:
            found[prefix + field.name] = dict(field.metadata)
    return found


def _schema_options() -> dict[str, dict]:
    """Every option of the run's schema and of every registered entry's schema: its documented key (`seed`,
    `method.composite`; a stage's keys by their own name) -> its field's metadata."""
    from prunekit.config import OptimConfig, TrainConfig
    from prunekit.registry import REGISTRIES

    register_schemas()
    groups = ("data", "model", "method", "schedule")
    found = {}
    for registry in REGISTRIES:
        for entry in registry.entries() if registry.group in groups else []:
            found.update(_fields(entry.config, f"{registry.group}."))
    stages = ("train", "prune", "finetune")
    found.update({key: meta for key, meta in _fields(TrainConfig).items() if key.split(".")[0] not in (*groups, *stages)})
    found.update(_fields(OptimConfig))  # the stages' keys, one table for the three
    return found


def test_the_configuration_page_lists_every_option_with_its_allowed_values():
    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    for key, metadata in _schema_options().items():
        if key in ("data.name", "model.name", "method.name", "schedule.name"):
            continue  # the group's choice itself: `prunekit list`
        assert key in rows or key.split(".")[-1] in rows, f"docs/configuration.md has no row for {key}"
        for value in metadata.get("choices", ()):
            assert value in rows.get(key, rows.get(key.split(".")[-1], "")), \
                f"docs/configuration.md: {key} allows {value}, the page does not say so"
