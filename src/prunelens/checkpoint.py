"""The resume file of a training job: one name, one format, resumed only on match.

Every training job (one seed or a block of seeds, any stage) writes
``resume.pt`` beside its first output after every epoch and deletes it when
its outputs are written. The file records a fingerprint of everything the
job's result depends on (stage, hyper-parameters, seeds, precision and the
identity of its input files); a rerun resumes only from a file with the same
fingerprint. A file written for other settings is moved aside to
``resume.stale.pt`` (one generation: restoring the old settings and renaming
it back resumes the old run) and the job starts afresh; an unreadable file
(a truncated copy, a full disk) is deleted and the job starts afresh. Both
cases are logged with the file's path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from prunelens.runtime import atomic_path, clean_stale_temps

log = logging.getLogger("prunelens.checkpoint")

RESUME = "resume.pt"
STALE = "resume.stale.pt"

__all__ = [
    "RESUME",
    "STALE",
    "fingerprint",
    "load_resume",
    "resume_path",
    "save_resume",
]


def resume_path(first_output: str | Path) -> Path:
    """Where the job whose first output is ``first_output`` keeps its resume file."""
    return Path(first_output).parent / RESUME


def _identity(path: str | Path) -> list[Any]:
    """A cheap identity of an input file: path, size, modification time."""
    st = os.stat(path)
    return [str(path), st.st_size, st.st_mtime_ns]


def fingerprint(settings: Mapping[str, Any], inputs: Sequence[str | Path] = ()) -> str:
    """sha256 of the JSON of ``settings`` (what the result depends on) and of
    the identities of the ``inputs`` files."""
    payload = {"settings": settings, "inputs": [_identity(p) for p in inputs]}
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def load_resume(path: Path, want: str, device: str) -> dict[str, Any] | None:
    """The resume state at ``path`` if it was written with fingerprint ``want``."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        got = state["fingerprint"]
    except Exception as err:  # torch raises several types for a bad file
        log.warning(
            "resume file %s is unreadable (%s: %s); deleted it, starting afresh",
            path,
            type(err).__name__,
            err,
        )
        path.unlink(missing_ok=True)
        return None
    if got != want:
        stale = path.with_name(STALE)
        os.replace(path, stale)
        log.warning(
            "resume file %s was written for other settings or inputs; moved it "
            "to %s and starting afresh",
            path,
            stale,
        )
        return None
    return state


def save_resume(path: Path, want: str, state: Mapping[str, Any]) -> None:
    # The resume file is no declared output: its killed writes are cleaned here.
    clean_stale_temps([path])
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": want, **state}, tmp)
