"""prunekit's sweeper: launches what the pre-flight decided for each job (prunekit/sweeps.py: finished jobs
skipped, interrupted ones resumed), composing nothing itself.

Jobs keep their numbers (and so their directories) whatever is skipped: the jobs still to run are
launched in runs of consecutive numbers, each run as one batch of the configured launcher.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.prunekit_sweeper import workers


@dataclass
class PrunekitSweeperConf:
    _target_: str = "hydra_plugins.prunekit_sweeper.prunekit_sweeper.PrunekitSweeper"
    max_batch_size: Optional[int] = None  # at most this many jobs per launcher batch (None: no limit)
    plan: Optional[List[str]] = None  # per job, in job order: done, resume, restart or fresh (the pre-flight's)


ConfigStore.instance().store(group="hydra/sweeper", name="prunekit", node=PrunekitSweeperConf, provider="prunekit")


class PrunekitSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None, plan: Optional[List[str]] = None) -> None:
        self.max_batch_size, self.plan = max_batch_size, plan

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _planned(self, arguments: List[str]) -> List[Optional[List[str]]]:
        """Per job, the overrides to launch it with, or None to skip it."""
        from prunekit.sweeps import DONE, FRESH, RESUME, sweep_jobs

        jobs = sweep_jobs(arguments)
        plan = list(self.plan) if self.plan is not None else [FRESH] * len(jobs)
        if len(plan) != len(jobs):  # the pre-flight checked other jobs than these: launch none of them
            raise ValueError(f"hydra.sweeper.plan has {len(plan)} entries for {len(jobs)} jobs")
        return [None if status == DONE else [*job, "resume=true"] if status == RESUME else job
                for job, status in zip(jobs, plan)]

    def sweep(self, arguments: List[str]) -> Any:
        planned = self._planned(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        workers.prepare(self.launcher)
        returns, number = [], 0
        while number < len(planned):
            if planned[number] is None:
                number += 1
                continue
            end, limit = number, self.max_batch_size or len(planned)
            while end < len(planned) and planned[end] is not None and end - number < limit:
                end += 1
            results = self.launcher.launch(planned[number:end], initial_job_idx=number)
            for result in results:
                _ = result.return_value  # raises what escaped a job (a job's own failures are recorded)
            returns.append(results)
            number = end
        return returns
