"""``logger=mlflow``: an MLflow run per prunekit run, in a local sqlite store by default: ``<sweep dir>/mlflow.db``
for a sweep's jobs (one experiment per sweep, one run per job), ``<run dir>/mlflow.db`` for a single run
(experiment ``prunekit``); ``logger.mlflow.tracking_uri`` or MLFLOW_TRACKING_URI name another store. Browse it with
``mlflow ui --backend-store-uri sqlite:///<dir>/mlflow.db``.

Logged: the flattened config as params, every epoch record as ``<stage>/<figure>`` at the epoch of that stage, the
summary as ``summary/<figure>`` (step 0) and the figures as artifacts under ``figures/``, kept beside a sqlite
store (``mlartifacts/``). A resumed run continues the same MLflow run id. The run ends FINISHED, or KILLED when
it stopped before its summary.

Only :class:`mlflow.tracking.MlflowClient` is used, never the global ``mlflow.start_run``: a sweep's jobs may run
one after the other in one process.
"""
from __future__ import annotations

import logging
import os
import posixpath
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock
from omegaconf import DictConfig

from prunekit.errors import UserError
from prunekit.trackers import TrackedRun, Tracker, register_tracker

STORE = "mlflow.db"
ARTIFACTS = "mlartifacts"
SERVERS = ("http", "https", "databricks")  # stores whose server chooses where artifacts go
RUN_DIR_TAG = "prunekit.run_dir"
# MLflow's rule for param and metric names, up to 250 characters (mlflow.utils.validation; colons only in its newer
# versions)
_NAME = re.compile(r"^[/\w.\- ]{1,250}$")
_QUIET = ("alembic", "mlflow.store.db.utils")  # a fresh sqlite store logs its schema migration at INFO


@dataclass
class MLflowConfig:
    # None: MLFLOW_TRACKING_URI if set, else sqlite:///<sweep or run dir>/mlflow.db
    tracking_uri: str | None = None
    # None: one experiment per sweep, named after the sweep's folder; "prunekit" for single runs
    experiment: str | None = None


@register_tracker("mlflow", config=MLflowConfig, requires="mlflow", extra="prunekit[mlflow]",
                  description="MLflow runs in a local sqlite store beside the run (mlflow ui)")
class MLflow(Tracker):
    """One MLflow run, driven through an MlflowClient of its own."""

    def __init__(self, cfg: DictConfig, run: TrackedRun, saved: dict | None):
        super().__init__(cfg, run, saved)
        if saved is not None:  # a resumed run: the same store and run, running again
            self.uri, self.run_id = saved["tracking_uri"], saved["run_id"]
            self.client = _client(self.uri)
            self.client.update_run(self.run_id, status="RUNNING")
            return
        self.uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run.home / STORE}"
        database = _sqlite_file(self.uri)
        if database is not None:  # kept absolute, so that a resumption started elsewhere finds it
            database = database.resolve()
            database.parent.mkdir(parents=True, exist_ok=True)
            self.uri = f"sqlite:///{database}"
        # A sweep's parallel jobs take turns on a sqlite store: two creating its tables at once break the migration.
        with FileLock(f"{database}.lock") if database is not None else nullcontext():
            self.client = _client(self.uri)
            experiment = self._experiment(cfg.experiment or (str(run.sweep) if run.sweep is not None else "prunekit"))
        created = self.client.create_run(experiment, run_name=run.name, tags={RUN_DIR_TAG: str(run.dir.resolve())})
        self.run_id = created.info.run_id

    def state(self) -> dict:
        return {"tracking_uri": self.uri, "run_id": self.run_id}

    def log_config(self, config: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

        params, skipped, truncated = [], [], []
        for key, value in config.items():
            if not _valid_name(key):
                skipped.append(key)
                continue
            if len(value) > MAX_PARAM_VAL_LENGTH:
                truncated.append(key)
                value = value[:MAX_PARAM_VAL_LENGTH]
            params.append(Param(key, value))
        for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + MAX_PARAMS_TAGS_PER_BATCH])
        # What the params do not hold as it was, said on the run itself (the full config is in the run directory)
        notes = {"prunekit.params_skipped": skipped, "prunekit.params_truncated": truncated}
        tags = [RunTag(name, ", ".join(keys)[:MAX_TAG_VAL_LENGTH]) for name, keys in notes.items() if keys]
        if tags:
            self.client.log_batch(self.run_id, tags=tags)

    def log_epoch(self, stage: str, epoch: int, step: int, values: dict[str, float]) -> None:
        self._metrics({f"{stage}/{key}": value for key, value in values.items()}, epoch)

    def log_summary(self, values: dict[str, float]) -> None:
        self._metrics({f"summary/{key}": value for key, value in values.items()}, 0)

    def log_figures(self, figures: list[Path]) -> None:
        for path in figures:
            self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def close(self, finished: bool) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if finished else "KILLED")

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        # a name MLflow refuses (a plug-in's record key) would fail the whole batch: that figure alone is left out
        metrics = [Metric(key, value, now, step) for key, value in values.items() if _valid_name(key)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def _experiment(self, name: str) -> str:
        """The id of experiment ``name``, created with its artifacts beside a local store if it is new."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=_artifact_location(self.uri, self.run))
            except MlflowException:  # another job of the sweep created it in the meantime
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise UserError(f"the MLflow experiment {name!r} in {self.uri} was deleted: restore it (mlflow "
                            f"experiments restore --experiment-id {found.experiment_id}) or choose another with "
                            f"logger.mlflow.experiment=<name>")
        return found.experiment_id


def _valid_name(key: str) -> bool:
    """Whether MLflow takes ``key`` as a param or metric name (a name it refuses would fail its whole batch)."""
    return bool(_NAME.match(key)) and posixpath.normpath(key) == key and not key.startswith("/")


def _client(uri: str):
    """An MlflowClient on ``uri`` (a new sqlite store's migration kept off the console)."""
    # Offline by default: MLflow 3 reports anonymous usage to its makers unless told not to (a user who wants it
    # sets MLFLOW_DISABLE_TELEMETRY=false).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with _quiet():
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri)  # which opens (and on first use creates) its store


def _artifact_location(uri: str, run: TrackedRun) -> str | None:
    """Where a new experiment keeps its artifacts: the server's choice for a tracking server; beside the database
    for a sqlite store (``<dir>/mlartifacts``); under the sweep's or run's folder for any other store. MLflow's own
    default, ./mlruns, would write into whatever folder the run was started from."""
    if urlparse(uri).scheme in SERVERS:
        return None
    database = _sqlite_file(uri)
    return ((database.parent if database is not None else run.home) / ARTIFACTS).resolve().as_uri()


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite store's URI (``sqlite:///relative`` or ``sqlite:////absolute``), else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's and alembic's INFO lines held back (warnings still show)."""
    loggers = [logging.getLogger(name) for name in _QUIET]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
