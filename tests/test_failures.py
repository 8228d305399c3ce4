"""Failures around a run are one line (< 200 characters), exit 2, and leave no half-written run directory:
seeds at the top of their range, empty or mismatched data, files that cannot be read or written (permissions,
a full disk, a file-size limit, a broken link), and messages that never pass on torch's or Hydra's noise.

The tests run as root (CI does too), and root ignores permission bits: a permission problem is made by
raising the error the system would raise (in-process), or by a subprocess without the capabilities that
let root through (``setpriv``), skipped with the reason where that cannot be had.
"""
import errno
import os
import pickle
import re
import resource
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import IDX_NAMES, images, labels, write_idx, write_mnist
from prunekit import rng
from prunekit.data.dataset import assemble
from prunekit.data.source import Source, reason
from prunekit.errors import UserError, file_problem
from prunekit.stages.training import epoch_generator, stage_seed

QUICK = ("train.epochs=1", "prune.epochs=1", "finetune.epochs=1", "latency=false", "figures=false")
LINE_LIMIT = 200
# setpriv (util-linux) starts a command as root without the capabilities that let root ignore permissions.
NO_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def one_line(code, err, *named, absent=()):
    """Exit 2 and one short line on stderr naming every word of ``named`` and none of ``absent``."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    # pytest's scratch folders (deeper under xdist) stand for a user's short working folder in the count
    assert len(re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/(popen-gw\d+/)?[^/ ]+", "/tmp/t", lines[0])) < LINE_LIMIT, lines[0]
    for word in named:
        assert word in lines[0], (word, err)
    for word in absent:
        assert word not in lines[0], (word, err)
    return lines[0]


def left_behind(run_dir: Path) -> list[str]:
    """What a run wrote that is still in ``run_dir`` (nothing after a failed run)."""
    return sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else []


def without_override(tmp_path) -> list[str]:
    """The setpriv prefix, or skip when this machine cannot drop the capabilities."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed: root cannot be made to obey permissions")
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        denied = subprocess.run([*NO_OVERRIDE, "cat", str(probe)], capture_output=True, timeout=30).returncode != 0
    finally:
        probe.chmod(0o600)
    if not denied:
        pytest.skip("setpriv could not drop CAP_DAC_OVERRIDE here (a container without CAP_SETPCAP?)")
    return NO_OVERRIDE


def prunekit(tmp_path, *args, prefix=(), limit=None):
    """Run ``prunekit`` in a subprocess in ``tmp_path`` (``limit``: RLIMIT_FSIZE in bytes); (code, out, err)."""
    env = {**os.environ, "PRUNEKIT_CACHE": str(tmp_path / "cache")}
    env.pop("PRUNEKIT_DEBUG", None)

    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([*prefix, sys.executable, "-m", "prunekit", *args], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=300, preexec_fn=limit_files if limit else None)
    return done.returncode, done.stdout, done.stderr


# --- item 1: seeds ---------------------------------------------------------------------------------------


def test_every_seed_derives_generator_seeds_torch_accepts_and_ordinary_seeds_keep_their_streams():
    for seed in (2**63 - 1, 2**64, 10**30):
        assert 0 <= stage_seed(seed, "finetune") < 2**64
        epoch_generator(seed, "prune", 3)  # used to raise "Overflow when unpacking long long"
        rng.seed_all(seed)
    # where the formula fits torch's range, it is what every run so far has used: no result moves
    assert stage_seed(7, "prune") == 7 * 1_000_003 + 1 * 10_007 + 5_003
    assert epoch_generator(7, "dense", 2).initial_seed() == 7 * 1_000_003 + 2


@pytest.mark.slow
def test_the_largest_int64_seed_runs_and_the_run_directory_is_printed(cli, tmp_path):
    code, out, err = cli("train", "seed=9223372036854775807", *QUICK, "hydra.run.dir=run")
    assert code == 0, err
    run = (tmp_path / "run").resolve()
    assert f"run directory: {run}" in out.splitlines()[0]
    assert out.strip().splitlines()[-1] == f"results in {run}"


# --- item 1: data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("empty, split", [(0, "train"), (2, "test")])
def test_an_idx_file_without_images_is_one_line(cli, tmp_path, empty, split):
    arrays = [images(40, (28, 28)), labels(40, 10), images(20, (28, 28), 1), labels(20, 10)]
    arrays[empty], arrays[empty + 1] = images(0, (28, 28)), []
    (tmp_path / "fm").mkdir()
    for name, array in zip(IDX_NAMES, arrays):
        write_idx(tmp_path / "fm" / name, np.asarray(array, dtype=np.uint8))
    code, _, err = cli("train", "dataset=fashion_mnist", f"data.root={tmp_path / 'fm'}", "hydra.run.dir=run")
    one_line(code, err, f"the {split} split holds no sample", "empty")
    assert left_behind(tmp_path / "run") == []


def test_train_and_test_samples_of_different_sizes_are_refused():
    train, test = torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, 1, 6, 6, dtype=torch.uint8)
    source = Source(train, torch.arange(10) % 2, test, torch.arange(4) % 2, num_classes=2)
    cfg = OmegaConf.create({"val_fraction": 0.2, "augment": {"crop_padding": 0, "hflip": False}})
    with pytest.raises(UserError, match="train samples are 1x8x8 but the test samples 1x6x6"):
        assemble("mine", source, cfg, torch.device("cpu"))


def test_a_data_root_without_permission_is_a_permission_problem(cli, tmp_path, monkeypatch):
    write_mnist(tmp_path / "fm", gz=False)
    original = Path.is_file

    def denied(path):  # what stat says inside a folder without the x permission
        if str(path).startswith(str(tmp_path / "fm")):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return original(path)

    monkeypatch.setattr(Path, "is_file", denied)
    code, _, err = cli("train", "dataset=fashion_mnist", f"data.root={tmp_path / 'fm'}", "hydra.run.dir=run")
    one_line(code, err, f"data.root={tmp_path / 'fm'}", "Permission denied", absent=("damaged",))
    assert not (tmp_path / "run").exists()


def test_an_unreadable_idx_file_is_a_permission_problem_not_damage(cli, tmp_path, monkeypatch):
    write_mnist(tmp_path / "fm", gz=False)
    original = Path.read_bytes

    def denied(path):
        if path.name == IDX_NAMES[2]:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", denied)
    code, _, err = cli("train", "dataset=fashion_mnist", f"data.root={tmp_path / 'fm'}", "hydra.run.dir=run")
    one_line(code, err, str(tmp_path / "fm" / IDX_NAMES[2]), "Permission denied", absent=("damaged", "replace"))
    assert left_behind(tmp_path / "run") == []


@pytest.mark.slow
def test_chmod_000_on_data_root_is_one_line_for_a_user_that_obeys_permissions(tmp_path):
    prefix = without_override(tmp_path)
    write_mnist(tmp_path / "fm", gz=False)
    (tmp_path / "fm").chmod(0)
    try:
        code, _, err = prunekit(tmp_path, "train", "dataset=fashion_mnist", f"data.root={tmp_path / 'fm'}",
                                "hydra.run.dir=run", prefix=prefix)
    finally:
        (tmp_path / "fm").chmod(0o755)
    one_line(code, err, str(tmp_path / "fm"), "Permission denied", absent=("damaged",))
    assert not (tmp_path / "run").exists()


# --- item 1: writes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code, cause", [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system"),
                                         (errno.ENOSPC, "No space left on device")])
def test_a_checkpoint_that_cannot_be_written_is_named_in_one_line(cli, tmp_path, monkeypatch, code, cause):
    from prunekit import rundir

    original = rundir.tempfile.mkstemp

    def refuse(dir, prefix):  # a read-only or full checkpoints/ folder
        if prefix.startswith(".last.pt"):
            raise OSError(code, os.strerror(code), str(Path(dir) / prefix))
        return original(dir=dir, prefix=prefix)

    monkeypatch.setattr(rundir.tempfile, "mkstemp", refuse)
    exit_code, _, err = cli("train", *QUICK, "hydra.run.dir=run")
    one_line(exit_code, err, str(tmp_path / "run" / "checkpoints" / "last.pt"), cause)
    assert left_behind(tmp_path / "run") == []


def test_a_cache_directory_that_cannot_be_written_is_one_line(cli, tmp_path, monkeypatch):
    original = Path.mkdir

    def refuse(path, *args, **kwargs):
        if path == tmp_path / "ro":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _, err = cli("train", *QUICK, f"cache_dir={tmp_path / 'ro'}", "hydra.run.dir=run")
    one_line(code, err, f"cache_dir={tmp_path / 'ro'}", "Permission denied")
    assert left_behind(tmp_path / "run") == []


@pytest.mark.slow
def test_a_file_size_limit_while_writing_a_checkpoint_is_one_line(tmp_path):
    # ulimit -f 200: 200 KiB, less than a checkpoint of the dense stage (CPython ignores SIGXFSZ, so a write
    # beyond the limit fails with EFBIG instead of killing the process). A full disk (ENOSPC) takes the same
    # path; the test above raises it, as no tmpfs can be mounted here without privileges.
    code, _, err = prunekit(tmp_path, "train", *QUICK, "hydra.run.dir=run", limit=200 * 1024)
    one_line(code, err, str(tmp_path / "run" / "checkpoints"), "File too large", "ulimit -f")
    assert left_behind(tmp_path / "run") == []


def test_a_figures_link_to_nowhere_is_one_line(cli, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "figures").symlink_to(tmp_path / "nowhere")
    code, _, err = cli("train", *QUICK, "hydra.run.dir=run")
    # the link is the user's, under a name a run writes: refused before anything is written, and kept
    one_line(code, err, str(tmp_path / "run"), "figures")
    assert left_behind(tmp_path / "run") == ["figures"] and (tmp_path / "run" / "figures").is_symlink()


@pytest.mark.slow
def test_explain_into_a_read_only_figures_folder_is_one_line(cli, tmp_path, monkeypatch):
    from prunekit import rundir

    assert cli("train", *QUICK, "hydra.run.dir=run")[0] == 0
    original = rundir.tempfile.mkstemp

    def refuse(dir, prefix):
        if Path(dir).name == "figures":
            raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / prefix))
        return original(dir=dir, prefix=prefix)

    monkeypatch.setattr(rundir.tempfile, "mkstemp", refuse)
    code, _, err = cli("explain", str(tmp_path / "run"))
    one_line(code, err, str(tmp_path / "run" / "figures"), "Permission denied")


# --- item 6: messages ------------------------------------------------------------------------------------


class Foreign:
    """A class a checkpoint may not name: torch's weights-only loader refuses it."""


def test_a_refused_checkpoint_never_repeats_torchs_advice_to_load_it_unsafely(cli, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"stage": Foreign()}, tmp_path / "run" / "checkpoints" / "last.pt")
    code, _, err = cli("train", "hydra.run.dir=run", "resume=true")
    one_line(code, err, "last.pt", "refused", "test_failures.Foreign", absent=("weights_only", "trust"))


def test_foreign_pretrained_weights_are_named_without_torchs_advice(tmp_path, monkeypatch):
    import torchvision

    from prunekit.models.pretrained import pretrained_network, weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    Path(weights_path(weights)).parent.mkdir(parents=True)
    torch.save({"conv1.weight": Foreign()}, weights_path(weights))
    with pytest.raises(UserError) as caught:
        pretrained_network(torchvision.models.resnet18, weights)
    message = str(caught.value)
    assert "test_failures.Foreign" in message and "\n" not in message, message
    assert "weights_only" not in message and "trust" not in message, message


def test_a_legacy_pickle_as_weights_is_one_line_without_torchs_warnings(cli, tmp_path):
    (tmp_path / "weights.pkl").write_bytes(pickle.dumps({"fc1.weight": [[0.0]]}))
    with warnings.catch_warnings(record=True) as caught:  # pytest would otherwise swallow what torch prints
        warnings.simplefilter("always")
        code, _, err = cli("train", f"model.weights={tmp_path / 'weights.pkl'}", "hydra.run.dir=run")
    one_line(code, err, "weights.pkl", "torch.save", absent=("Warning", "weights_only"))
    assert not [w for w in caught if "pickle" in str(w.message)], [str(w.message) for w in caught]
    assert left_behind(tmp_path / "run") == []


def test_an_unknown_option_of_train_is_one_line(cli):
    one_line(*cli("train", "--foo")[::2], "--foo", "prunekit train --help")


def test_a_value_split_at_a_space_gets_a_hint_to_quote_it(cli, tmp_path):
    # data.root=/tmp/a b c unquoted reaches prunekit as three words
    code, _, err = cli("train", "data.root=/tmp/a", "b", "c", "seed=1")
    one_line(code, err, "'b'", "quote", "'data.root=/tmp/a b c'")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_report_warns_when_it_leaves_out_a_summary_value_that_is_no_number(tmp_path, capsys, monkeypatch):
    import json

    from test_report import write_run

    from prunekit.report import main as report

    monkeypatch.setattr("prunekit.report.figures", lambda groups: {})
    write_run(tmp_path / "runs" / "a", seed=0)
    write_run(tmp_path / "runs" / "b", seed=1)
    summary = json.loads((tmp_path / "runs" / "b" / "summary.json").read_text())
    (tmp_path / "runs" / "b" / "summary.json").write_text(json.dumps({**summary, "accuracy": "0.93"}))
    assert report([str(tmp_path / "runs")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "accuracy is not a number in 1 of 2 runs ('0.93'" in warnings[0], warnings
    assert str(tmp_path / "runs" / "b" / "summary.json") in warnings[0]


def test_the_messages_of_failed_loads_and_writes_stay_short():
    """Every message built from a third-party error: the path, the cause, and a short reason."""
    deep = "/tmp/pytest-of-someone/pytest-1234/test_a_rather_long_test_name_for_a_path0/run/checkpoints/last.pt"
    for code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EEXIST):
        message = str(file_problem(OSError(code, os.strerror(code)), deep, "write"))
        assert deep in message and os.strerror(code) in message and len(message) < LINE_LIMIT, message
    try:
        torch.load(_foreign_file(deep), weights_only=True)
    except pickle.UnpicklingError as err:
        text = reason(err)
    assert "Foreign" in text and "weights_only" not in text and len(text) <= 100, text
    assert len(reason(RuntimeError("mirror failed; " * 50))) <= 100


def _foreign_file(name: str):
    import io

    buffer = io.BytesIO()
    torch.save({"name": name, "object": Foreign()}, buffer)
    buffer.seek(0)
    return buffer
