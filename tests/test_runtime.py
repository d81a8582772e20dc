"""Job plumbing: GPU claims by lock file."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from prunelens import runtime
from prunelens.runtime import claim_gpu

HOLD = textwrap.dedent(
    """
    import sys, time
    from prunelens.runtime import claim_gpu
    print(claim_gpu(sys.argv[2:], sys.argv[1]), flush=True)
    time.sleep(60)
    """
)


def _holder(lock_dir, *keys: str) -> tuple[subprocess.Popen, str]:
    """A process that claims one of ``keys`` and keeps it; its claim printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock_dir), *keys],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def test_parallel_jobs_claim_different_gpus_and_a_dead_job_frees_its_own(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(runtime, "_GPU_LOCKS", {})
    first, got = _holder(tmp_path, "gpu-a", "gpu-b")
    try:
        assert got == "0"
        assert claim_gpu(["gpu-a", "gpu-b"], tmp_path) == 1  # a is held
        assert claim_gpu(["gpu-a", "gpu-b"], tmp_path) == 1  # ours, again
        third, got = _holder(tmp_path, "gpu-a", "gpu-b")
        third.kill()
        third.wait()
        assert got == "None"  # both held
    finally:
        first.kill()
        first.wait()
    # the killed holder's claim went with it (no stale lock)
    again, got = _holder(tmp_path, "gpu-a", "gpu-b")
    again.kill()
    again.wait()
    assert got == "0"
