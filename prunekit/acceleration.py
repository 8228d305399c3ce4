"""How a run uses its device: precision, memory format, compilation, and the process-wide switches.

The defaults (fp32, no channels_last, no compile) leave training exactly as it is without this module: no
autocast, no scaler, the model itself as the forward. The options, all top-level config keys:

- ``precision``: ``bf16`` and ``fp16`` run the forward and the loss under ``torch.autocast`` (weights,
  gradients and the optimiser stay fp32); ``fp16`` also scales the loss (``torch.amp.GradScaler``) and
  unscales the gradients before any hook sees them, so masks and methods read true gradients.
- ``channels_last``: conv networks and their batches in NHWC, the layout tensor cores want.
- ``compile``: ``torch.compile`` of a twin callable used for the training forward only; the run keeps the
  original module, so state_dict keys, checkpoints, masks and ``prunekit explain`` never see ``_orig_mod``.
- ``deterministic`` and ``cudnn.benchmark``: process-wide, set for one run and restored after it.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.errors import UserError, warn

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CUBLAS_WORKSPACE = ":4096:8"  # the setting CUDA documents for deterministic cuBLAS (a few MB more workspace)


@dataclass(frozen=True)
class Acceleration:
    """A run's device options; :meth:`bind` applies the per-model ones, :meth:`process_settings` the rest."""

    device_type: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    cudnn_benchmark: bool = False  # only ever true on CUDA

    @classmethod
    def from_config(cls, cfg: DictConfig, device: torch.device) -> Acceleration:
        """The options of a composed run config for ``device``; raises UserError on what the device cannot do."""
        if cfg.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(f"precision=bf16 needs a GPU with bfloat16 support (Ampere or newer), but this one is "
                            f"{torch.cuda.get_device_name(device)}; use precision=fp16")
        if cfg.precision == "fp16" and device.type == "cpu":  # allowed: it runs the scaler's path on a CPU-only CI
            warn("precision=fp16 on the CPU works but is very slow (VGG16-small: about 25x fp32 on our 2-core CPU); "
                 "use precision=bf16 on the CPU")
        # Deterministic convolutions rule out cuDNN's autotuner, which may pick a non-deterministic algorithm.
        benchmark = device.type == "cuda" and cfg.cudnn.benchmark and not cfg.deterministic
        return cls(device.type, cfg.precision, cfg.channels_last, cfg.compile, cfg.deterministic, benchmark)

    @contextlib.contextmanager
    def process_settings(self) -> Iterator[None]:
        """Deterministic algorithms and cuDNN autotuning for the duration of a run, restored afterwards: the
        jobs of a sweep may share one process, and one job's choice must not leak into the next."""
        determinism = (torch.are_deterministic_algorithms_enabled(),
                       torch.is_deterministic_algorithms_warn_only_enabled())
        benchmark, workspace = torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        if self.deterministic:
            if self.device_type == "cuda" and workspace is None:  # cuBLAS reads it before its first call
                os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
            torch.use_deterministic_algorithms(True)
        if self.device_type == "cuda":  # the CPU has no cuDNN: its flag is left as it was
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(determinism[0], warn_only=determinism[1])
            torch.backends.cudnn.benchmark = benchmark
            if workspace is None:
                os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)

    def bind(self, model: nn.Module) -> AcceleratedModel:
        """``model`` as the engine trains and evaluates it with these options (converts it in place)."""
        return AcceleratedModel(self, model)


class AcceleratedModel:
    """One model with a run's options: its training forward, autocast, the batches' memory format and the
    gradient scaler; :mod:`prunekit.engine` calls these where a plain loop calls the model and the optimiser."""

    def __init__(self, settings: Acceleration, model: nn.Module):
        self.settings, self.model = settings, model
        # An MLP has nothing to convert (and flattening an NHWC batch would only cost a copy): no effect there.
        self.channels_last = settings.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
        if self.channels_last:
            # In place: the parameters stay the same objects, so masks, methods and optimisers keep theirs.
            model.to(memory_format=torch.channels_last)
        self.scaler = torch.amp.GradScaler(settings.device_type) if settings.precision == "fp16" else None
        self.trained: nn.Module = model  # what the training forward calls: the model, or a DDP over it
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None = None

    def train_through(self, module: nn.Module) -> None:
        """Run the training forward through ``module`` (prunekit/distributed/parallel.py's DDP over the model)."""
        self.trained, self._compiled = module, None

    @property
    def forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The training forward: the model, or its compiled twin (made on first use; it shares the parameters,
        so the masks applied in place between steps hold inside the compiled graph too)."""
        if not self.settings.compile:
            return self.trained
        if self._compiled is None:
            self._compiled = torch.compile(self.trained)
        return self._compiled

    @property
    def fused_optimizer(self) -> bool:
        """Whether the optimiser may be torch's fused one: not under fp16's scaler, because fused SGD creates
        its momentum buffers uninitialised (empty_like) and a first step the scaler skips for an overflow
        leaves them so (torch 2.15): the weights turn NaN at the next step."""
        return self.scaler is None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context for the forward and the loss: autocast to bf16/fp16, nothing at fp32."""
        dtype = PRECISIONS[self.settings.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.settings.device_type, dtype=dtype)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the model was converted to."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Gradients of ``loss``, left unscaled in ``.grad`` (fp16: scaled for the backward pass, then divided
        back, so the hooks that run next see the true values)."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step (fp16: skipped when a gradient overflowed, and the loss scale adjusted)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


PLAIN = Acceleration()  # fp32 eager: what the engine does when given no options
