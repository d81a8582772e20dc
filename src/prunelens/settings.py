"""How a training job runs, resolved once: device, threads, precision, compile,
how often it logs.

These settings choose how fast a job runs, not what it computes (except
``precision``, which a job's resume fingerprint records). Built from plain
values, so a workflow script can pass ``snakemake.params`` or
``snakemake.resources`` entries alike.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("prunelens.settings")

PRECISIONS = ("fp32", "bf16")

__all__ = ["PRECISIONS", "JobSettings", "job_settings"]


def _compile_available(device: str) -> bool:
    """Whether torch.compile's default backend has its toolchain here."""
    if device.startswith("cuda"):
        return importlib.util.find_spec("triton") is not None
    return any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++"))


@dataclass(frozen=True)
class JobSettings:
    """A job's resolved settings; build with :meth:`create` (or :meth:`of`).

    ``device`` is a concrete torch device (``cpu``, ``cuda:0``); ``bf16`` says
    whether the forward pass runs under bfloat16 autocast (``precision`` as
    asked, ``bf16`` as granted: False on a GPU without bf16); ``compile``
    whether ``torch.compile`` is applied (False where its backend is missing);
    ``log_every_steps`` how often the loop records a step row of the training
    curves (0: epoch rows only), ``progress_s`` the longest silence of the
    log inside an epoch (:mod:`prunelens.curves`).
    """

    device: str = "cpu"
    threads: int = 1
    precision: str = "fp32"
    bf16: bool = False
    compile: bool = False
    eval_batch_size: int = 1024
    log_every_steps: int = 50
    progress_s: float = 30.0

    @classmethod
    def create(
        cls,
        device: str = "auto",
        threads: int = 1,
        precision: str = "fp32",
        compile: bool = False,
        eval_batch_size: int = 1024,
        log_every_steps: int = 50,
        progress_s: float = 30.0,
    ) -> JobSettings:
        """Validate, pick the device and set this process's torch threads."""
        import torch

        from prunelens.runtime import keep_freed_memory, pick_device

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if int(log_every_steps) < 0 or float(progress_s) < 0:
            raise ValueError(
                f"log_every_steps and progress_s must be >= 0, got "
                f"{log_every_steps!r} and {progress_s!r}"
            )
        torch.set_num_threads(max(1, int(threads)))
        keep_freed_memory()
        dev = pick_device(device)
        bf16 = precision == "bf16"
        if bf16 and dev.startswith("cuda") and not torch.cuda.is_bf16_supported():
            log.warning("this GPU has no bf16; training in float32")
            bf16 = False
        if compile and not _compile_available(dev):
            log.warning("torch.compile has no backend toolchain here; eager mode")
            compile = False
        return cls(
            dev, max(1, int(threads)), precision, bf16, compile, eval_batch_size,
            int(log_every_steps), float(progress_s),
        )  # fmt: skip

    @classmethod
    def of(cls, value: JobSettings | Mapping[str, Any] | None) -> JobSettings:
        """``value`` itself, or :meth:`create` from a mapping of plain values."""
        if isinstance(value, JobSettings):
            return value
        return cls.create(**dict(value or {}))


def job_settings(job: Any) -> dict[str, Any]:
    """The plain settings of a Snakemake job (``snakemake`` in a rule's
    script): its untracked resources, threads and its ``precision`` param,
    for :meth:`JobSettings.of`."""
    res = job.resources
    return {
        "device": res.device,
        "threads": job.threads,
        "precision": job.params.precision,
        "compile": res.compile,
        "eval_batch_size": res.eval_batch_size,
        "log_every_steps": res.log_every_steps,
        "progress_s": res.progress_s,
    }
