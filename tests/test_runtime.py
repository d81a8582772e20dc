"""Job plumbing: GPU claims by lock file."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

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


# ------------------------------------------------------- failed and killed writes


def test_a_full_disk_names_the_file_torch_was_writing(tmp_path, monkeypatch):
    import torch

    def full(obj, f, *args, **kwargs):  # torch's message on ENOSPC, verbatim
        raise RuntimeError(
            "[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"
        )

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "model.pt"
    with pytest.raises(runtime.DiskFullError) as err, runtime.atomic_path(out) as tmp:
        torch.save({}, tmp)
    message = str(err.value)
    assert message.startswith(f"no space left on device writing {out} (")
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary


def test_a_full_disk_on_a_plain_write_is_reported_the_same(tmp_path):
    import errno

    out = tmp_path / "table.csv"
    full = pytest.raises(runtime.DiskFullError, match="no space left on device")
    with full, runtime.atomic_path(out):
        raise OSError(errno.ENOSPC, "No space left on device")
    # Other errors pass unchanged.
    with pytest.raises(ValueError, match="other"), runtime.atomic_path(out):
        raise ValueError("other")
    assert list(tmp_path.iterdir()) == []


def test_a_rerun_removes_what_killed_writes_left_beside_its_outputs(tmp_path, caplog):
    out = tmp_path / "fig2.pdf"
    stale = [tmp_path / ".fig2.pdf.ab12cd.tmp", tmp_path / ".fig2.pdf.0f0f.part"]
    keep = [tmp_path / ".fig2.png.ab12cd.tmp", tmp_path / ".hidden", tmp_path / "x"]
    for p in stale + keep:
        p.write_text("x")
    caplog.set_level("INFO", logger="prunelens")
    with runtime.log_to(tmp_path / "job.log", [out]):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in keep] + ["job.log"]
    )
    log = (tmp_path / "job.log").read_text()
    assert f"removed {stale[0]}, left by an interrupted write of {out}" in log


def test_a_write_killed_mid_way_leaves_a_temp_that_the_next_run_removes(tmp_path):
    out = tmp_path / "data.npz"
    script = textwrap.dedent(
        f"""
        import os, signal
        from prunelens.runtime import atomic_path
        with atomic_path({str(out)!r}) as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    assert not out.exists()
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".data.npz.")
    assert left.name.endswith(".tmp")
    assert runtime.clean_stale_temps([out]) == [left]
    assert list(tmp_path.iterdir()) == []
