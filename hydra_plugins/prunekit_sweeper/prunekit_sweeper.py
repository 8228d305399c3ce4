"""Hydra's basic sweeper, made resumable: finished jobs are skipped, interrupted ones resumed (prunekit/sweeps.py).

Jobs keep their numbers (and so their directories) whatever is skipped: the jobs still to run are
launched in runs of consecutive numbers, each run as one batch of the configured launcher.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict, read_write

from hydra_plugins.prunekit_sweeper import workers

log = logging.getLogger(__name__)


@dataclass
class PrunekitSweeperConf:
    _target_: str = "hydra_plugins.prunekit_sweeper.prunekit_sweeper.PrunekitSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="prunekit", node=PrunekitSweeperConf, provider="prunekit")


class PrunekitSweeper(BasicSweeper):
    def _job_dir(self, overrides: List[str], number: int) -> Path:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with read_write(cfg), open_dict(cfg):
            cfg.hydra.job.num = cfg.hydra.job.id = number
        return Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir")), cfg

    def _plan(self, jobs: List[List[str]]) -> List[Optional[List[str]]]:
        """Per job, the overrides to launch it with, or None to skip it."""
        from prunekit.sweeps import CRASH_REPORT, DONE, RESTART, RESUME, clear_attempt, job_status

        planned, counts = [], {}
        for number, overrides in enumerate(jobs):
            job_dir, cfg = self._job_dir(overrides, number)
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]
            status = job_status(job_dir, cfg, number)
            counts[status] = counts.get(status, 0) + 1
            if status == RESTART:
                clear_attempt(job_dir)
            if status in (RESUME, RESTART):
                (job_dir / CRASH_REPORT).unlink(missing_ok=True)  # a crashed attempt's traceback: it runs again
            planned.append(None if status == DONE else [*overrides, "resume=true"] if status == RESUME else overrides)
        if counts.get(DONE) or counts.get(RESUME) or counts.get(RESTART):
            print(f"sweep: {len(jobs)} jobs: {counts.get(DONE, 0)} finished (skipped), {counts.get(RESUME, 0)} "
                  f"resumed, {counts.get(RESTART, 0) + counts.get('fresh', 0)} to run", flush=True)
        return planned

    def sweep(self, arguments: List[str]) -> Any:
        params = self._parse_config()
        params.extend(arguments)
        parsed = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(params)
        jobs = [job for batch in self.split_arguments(parsed, None) for job in batch]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        planned = self._plan(jobs)
        workers.prepare(self.launcher)
        returns, number = [], 0
        while number < len(planned):
            if planned[number] is None:
                number += 1
                continue
            end, limit = number, self.max_batch_size or len(planned)
            while end < len(planned) and planned[end] is not None and end - number < limit:
                end += 1
            batch = planned[number:end]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=number)
            for result in results:
                _ = result.return_value  # raises what escaped a job (a job's own failures are recorded)
            returns.append(results)
            number = end
        return returns
