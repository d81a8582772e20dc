"""Job plumbing shared by the workflow scripts: logging, devices, atomic files."""

from __future__ import annotations

import contextlib
import errno
import glob
import importlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "VERSIONED",
    "DiskFullError",
    "as_paths",
    "atomic_path",
    "clean_stale_temps",
    "claim_gpu",
    "keep_freed_memory",
    "log_to",
    "pick_device",
    "versions",
    "write_csv",
    "write_json",
    "write_npz",
]

log = logging.getLogger("prunelens")


@contextlib.contextmanager
def log_to(
    path: str | Path | None, outputs: Iterable[str | Path] = ()
) -> Iterator[None]:
    """Send logging and stderr (tracebacks included) to a rule's log file.

    First deletes the temporary files that a killed earlier run left beside
    the job's ``outputs`` (``clean_stale_temps``), logging each.
    """
    outputs = [str(p) for p in outputs]
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        clean_stale_temps(outputs)
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old_err, sys.stderr = sys.stderr, fh
        try:
            clean_stale_temps(outputs)
            yield
        except BaseException:
            log.exception("job failed")
            raise
        finally:
            sys.stderr = old_err
            root.removeHandler(handler)


class DiskFullError(OSError):
    """A write that failed for want of space; the message names the file."""


def _is_disk_full(err: BaseException | None) -> bool:
    # torch's zip writer reports ENOSPC as a RuntimeError ("unexpected pos",
    # "file write failed"); plain writes as OSError. Look down the chain.
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err)
        if isinstance(err, RuntimeError) and (
            "unexpected pos" in text or "file write failed" in text
        ):
            return True
        err = err.__cause__ or err.__context__
    return False


def stale_temps(path: str | Path) -> list[Path]:
    """Temporary files an interrupted atomic write of ``path`` left beside it:
    ``.<name>.<random>.tmp`` (and the ``.part`` of earlier versions' downloads)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(
        p
        for suffix in (".tmp", ".part")
        for p in path.parent.glob(f".{glob.escape(path.name)}.*{suffix}")
    )


def clean_stale_temps(paths: Iterable[str | Path]) -> list[Path]:
    """Delete what killed writes of ``paths`` left behind (a kill skips
    ``atomic_path``'s clean-up); return the files removed."""
    removed = []
    for path in paths:
        for tmp in stale_temps(path):
            tmp.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted write of %s", tmp, path)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place on success.

    A job killed or failing mid-write therefore never leaves a partial file
    (a kill may leave the temporary file, which the job's next run deletes:
    ``clean_stale_temps``). A full disk raises ``DiskFullError`` naming
    ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    # mkstemp makes the file private (0600); give it the usual umask-derived mode
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        if isinstance(err, DiskFullError) or not _is_disk_full(err):
            raise
        free = shutil.disk_usage(path.parent).free
        raise DiskFullError(
            f"no space left on device writing {path} "
            f"({free / 1e6:.0f} MB free in {path.parent}); free space and rerun"
        ) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# The packages a model's numbers depend on, recorded with every model.
VERSIONED = ("torch", "torchvision", "numpy")


def versions() -> dict[str, str | None]:
    """The versions of Python, the packages in ``VERSIONED`` (None if not
    installed) and prunelens that this process runs: recorded in every
    ``metrics.json`` and ``encoder.pt``, compared by ``prunelens diff``.

    Each read from the module's ``__version__``: torch's carries its build
    (``+cu130``), which its distribution's metadata lacks.
    """
    import prunelens

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            out[name] = None
    out["prunelens"] = prunelens.__version__
    return out


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, frame: Any) -> None:
    """Write a pandas DataFrame without its index, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_npz(path: str | Path, arrays: dict[str, Any]) -> None:
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def pick_device(choice: str) -> str:
    """The torch device a job runs on: ``auto``, ``cpu`` or ``cuda``.

    ``auto`` means a GPU when torch finds one, else the CPU; ``cuda`` must
    exist. With several GPUs visible, the job claims one that no other
    prunelens job on this machine holds (see :func:`claim_gpu`) and gets
    ``cuda:<index>``, so parallel jobs spread over the GPUs instead of all
    landing on ``cuda:0``; under Slurm a job usually sees only its own GPUs.
    On a GPU, TF32 is switched off: ``precision: fp32`` then means float32 as
    on the CPU, and the two agree within float tolerance (``bf16`` is the fast
    path).
    """
    import torch

    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice != "cuda":
        return choice
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch finds no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    n = torch.cuda.device_count()
    if n == 1:
        index = 0
    else:
        keys = [str(torch.cuda.get_device_properties(i).uuid) for i in range(n)]
        index = claim_gpu(keys)
        if index is None:
            free = [torch.cuda.mem_get_info(i)[0] for i in range(n)]
            index = max(range(n), key=free.__getitem__)
            log.warning(
                "all %d GPUs are claimed; sharing cuda:%d (most free)", n, index
            )
    torch.cuda.set_device(index)
    return f"cuda:{index}"


# Lock files (open descriptors) of the GPUs this process holds, by key; they
# are closed only when the process exits.
_GPU_LOCKS: dict[str, int] = {}


def claim_gpu(keys: list[str], lock_dir: str | Path | None = None) -> int | None:
    """Index of the first GPU (by unique ``keys``) no other process holds.

    A GPU is held through an exclusive ``flock`` on ``<lock_dir>/prunelens-gpu-
    <key>.lock``, kept until this process exits, so a crashed job never leaves
    a stale claim. Returns None when every GPU is held. ``lock_dir`` defaults
    to ``$PRUNELENS_LOCK_DIR`` or the temporary directory.
    """
    import fcntl

    for index, key in enumerate(keys):
        if key in _GPU_LOCKS:  # this process's claim: keep using that GPU
            return index
    folder = Path(
        lock_dir or os.environ.get("PRUNELENS_LOCK_DIR") or tempfile.gettempdir()
    )
    folder.mkdir(parents=True, exist_ok=True)
    for index, key in enumerate(keys):
        fd = os.open(
            folder / f"prunelens-gpu-{key}.lock", os.O_CREAT | os.O_RDWR, 0o666
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _GPU_LOCKS[key] = fd
        return index
    return None


def keep_freed_memory() -> bool:
    """Stop glibc returning freed batch-sized buffers to the OS after each step.

    By default every training step page-faults its large temporaries back in
    (mmap threshold and heap trimming); keeping them makes CPU training about
    30% faster here. No effect on results. Returns False where glibc's
    ``mallopt`` is unavailable.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
        return bool(
            libc.mallopt(m_mmap_threshold, 1 << 30)
            and libc.mallopt(m_trim_threshold, 1 << 30)
        )
    except (OSError, AttributeError):
        return False


def as_paths(value: str | Path | Iterable[str | Path]) -> list[str]:
    """A rule's named input or output as a list of paths (one or many)."""
    if isinstance(value, str | Path):
        return [str(value)]
    return [str(v) for v in value]
