"""The workflow through a real one-node Slurm cluster, and the profiles' guards.

Tests marked ``slurm`` start the cluster of ``.ci/slurm/local-slurm.sh``
(installing Debian's Slurm, munge, MariaDB and slurmdbd with apt when they are
missing; root only) and submit real jobs through
``--profile profiles/slurm --profile tests/slurm/profile``. Deselect them with
``-m "not slurm"``. Every wait is bounded: a Snakemake that stops making
progress is killed, its Slurm jobs cancelled, and the test fails with the tail
of its log.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE, TINY, deep_merge

from prunelens.data import make_synthetic_images_archive

SCRIPT = REPO / ".ci/slurm/local-slurm.sh"
SLURM_DIR = Path(os.environ.get("PRUNELENS_SLURM_DIR", "/tmp/prunelens-slurm"))
PROFILES = [
    "--profile",
    str(REPO / "profiles/slurm"),
    "--profile",
    str(REPO / "tests/slurm/profile"),
]
# TINY, with the subsets stated so that the rules' memory requests are small
SLURM_TINY = deep_merge(TINY, {"data": {"subset_train": 120, "subset_test": 60}})
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


# ---------------------------------------------------------------- helpers


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "SNAKEMAKE_PROFILE" and not k.startswith(("SBATCH_", "PRUNELENS_"))
    }
    env.update(extra)
    return env


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def _cancel_run(log: Path) -> None:
    """scancel every job of the Snakemake run that wrote ``log``."""
    m = re.search(r"SLURM run ID: (\S+)", _tail(log, 10**7))
    if m:
        subprocess.run(["scancel", "--name", m.group(1)], timeout=30, check=False)


def snakemake(
    workdir: Path,
    *args: str,
    configfiles: list[Path],
    log: Path,
    timeout: float,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start Snakemake in its own process group, output to ``log``."""
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        *map(str, configfiles),
        *args,
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    fh = open(log, "wb")  # noqa: SIM115 (closed by the child's exit)
    proc = subprocess.Popen(
        cmd,
        stdout=fh,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env=env or _env(),
        start_new_session=True,
    )
    proc.deadline = time.monotonic() + timeout  # type: ignore[attr-defined]
    proc.log = log  # type: ignore[attr-defined]
    return proc


def wait(proc: subprocess.Popen[bytes], what: str) -> int:
    """Wait for ``proc`` until its deadline; on timeout kill it and fail."""
    left = proc.deadline - time.monotonic()  # type: ignore[attr-defined]
    try:
        return proc.wait(timeout=max(left, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake may ignore SIGTERM
        proc.wait(timeout=30)
        _cancel_run(proc.log)  # type: ignore[attr-defined]
        pytest.fail(
            f"{what}: no result in time (a hung status loop?); Snakemake killed.\n"
            f"log {proc.log}:\n{_tail(proc.log)}"  # type: ignore[attr-defined]
        )


def run(workdir: Path, *args: str, what: str, timeout: float = 600, **kw) -> str:
    log = workdir.parent / f"{workdir.name}-{int(time.time() * 1000)}.log"
    proc = snakemake(workdir, *args, log=log, timeout=timeout, **kw)
    rc = wait(proc, what)
    out = log.read_text(errors="replace")
    out += f"\n[exit {rc}]"
    return out


def sacct_rows(run_id: str) -> list[dict[str, str]]:
    fields = ["JobIDRaw", "State", "Partition", "Account", "ExitCode"]
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "--name", run_id, "--starttime", "now-1days"]
        + [f"--format={','.join(fields)}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    lines = [line for line in out.splitlines() if line]
    return [dict(zip(fields, line.split("|"), strict=True)) for line in lines]


def write_config(tmp: Path, cfg: dict, n_train: int = 12, n_test: int = 6) -> Path:
    archive = tmp / "images.tar.gz"
    make_synthetic_images_archive(
        archive, n_train_per_class=n_train, n_test_per_class=n_test
    )
    cfg = deep_merge(cfg, {"data": {"images_archive": str(archive)}})
    path = tmp / "overlay.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------- the cluster


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PRUNELENS_SLURM_DIR": str(SLURM_DIR)},
    )


@pytest.fixture(scope="module")
def slurm() -> dict[str, float]:
    """A running local cluster; stopped afterwards if this fixture started it."""
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (.ci/slurm/local-slurm.sh)")
    have = all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS)
    if not have and not shutil.which("apt-get"):
        pytest.skip("no Slurm and no apt-get to install it")
    times = {}
    t = time.monotonic()
    proc = _script("install", timeout=900)
    times["install_s"] = time.monotonic() - t
    assert proc.returncode == 0, f"installing Slurm failed:\n{proc.stderr[-3000:]}"
    was_up = _script("status", timeout=60).returncode == 0
    t = time.monotonic()
    proc = _script("start", timeout=300)
    times["start_s"] = time.monotonic() - t
    assert proc.returncode == 0, f"starting Slurm failed:\n{proc.stderr[-3000:]}"
    print(
        f"local Slurm: install {times['install_s']:.1f} s, "
        f"start {times['start_s']:.1f} s"
    )
    yield times
    if not was_up:
        _script("stop", timeout=300)


# ---------------------------------------------------------------- tests


@pytest.mark.slurm
def test_tables_through_slurm_equal_a_local_run(slurm, tmp_path):
    # TINY without ΔGMP (a second GMP cell would only add time)
    cfg = deep_merge(SLURM_TINY, {"schedules": {"scl": {"delayed_gmp": []}}})
    files = [REPO / "config.yaml", write_config(tmp_path, cfg)]
    # the local reference run goes alongside the Slurm run
    local = snakemake(
        tmp_path / "local",
        "-c1",
        "all_tables",
        configfiles=files,
        log=tmp_path / "local.log",
        timeout=900,
    )
    t = time.monotonic()
    out = run(
        tmp_path / "slurm",
        *PROFILES,
        "all_tables",
        configfiles=files,
        what="run through Slurm",
        timeout=900,
    )
    print(f"tiny all_tables through Slurm: {time.monotonic() - t:.0f} s")
    assert out.endswith("[exit 0]"), out[-5000:]
    assert wait(local, "local run") == 0, _tail(tmp_path / "local.log")
    # every job went through Slurm, and Slurm's accounting saw it complete
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", out))
    rows = sacct_rows(run_id)
    assert {r["JobIDRaw"] for r in rows} == submitted, rows
    assert len(submitted) > 5
    assert {(r["State"], r["Partition"], r["Account"]) for r in rows} == {
        ("COMPLETED", "debug", "prunelens")
    }
    # ... and produced the same tables as the local run, byte for byte
    tables = sorted((tmp_path / "local/results/tables").iterdir())
    # 7 tables x (csv, md, tex) + claims.html + sparsity.{csv,md,html}
    assert len(tables) == 25
    for f in tables:
        other = tmp_path / "slurm/results/tables" / f.name
        if f.suffix == ".csv":
            pd.testing.assert_frame_equal(pd.read_csv(f), pd.read_csv(other))
        assert f.read_bytes() == other.read_bytes(), f.name


MODEL = "results/models/sup/dense/s0/seed0/model.pt"


@pytest.mark.slurm
def test_scancel_fails_the_job_and_a_rerun_resumes_to_the_same_weights(slurm, tmp_path):
    """scancel a running training: Snakemake stops with the job's log (no
    hang); --rerun-incomplete resumes from resume.pt; the weights equal an
    uninterrupted local run's."""
    cfg = deep_merge(
        SLURM_TINY,
        {
            "data": {"subset_train": 300, "subset_test": 60},
            "model": {"depth": 16, "width": 2},
            "sup": {"epochs": 10, "batch_size": 32},
        },
    )
    files = [REPO / "config.yaml", write_config(tmp_path, cfg, n_train=30)]
    # the uninterrupted reference, locally, alongside
    local = snakemake(
        tmp_path / "local",
        "-c1",
        MODEL,
        configfiles=files,
        log=tmp_path / "local.log",
        timeout=900,
    )
    work = tmp_path / "slurm"
    log = tmp_path / "cancelled.log"
    proc = snakemake(work, *PROFILES, MODEL, configfiles=files, log=log, timeout=600)
    resume = work / "results/models/sup/dense/s0/seed0/resume.pt"
    jobid = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        text = _tail(log, 10**7)
        # the training's Slurm job (a job of group "model" in profiles/slurm)
        m = re.search(r"SLURM jobid (\d+) \(log: \S+_train_supervised\S*/", text)
        if m and resume.exists():
            jobid = m.group(1)
            break
        time.sleep(0.5)
    if jobid is None:
        os.killpg(proc.pid, signal.SIGKILL)
        _cancel_run(log)
        pytest.fail(f"the training never wrote resume.pt:\n{_tail(log)}")
    assert not (work / MODEL).exists(), "the training ended before scancel"
    subprocess.run(["scancel", jobid], check=True, timeout=30)
    rc = wait(proc, "Snakemake after scancel")
    text = log.read_text()
    assert rc != 0, text[-3000:]
    # the failed job, its Slurm log (shown, with slurmstepd's CANCELLED line)
    # and the training's own log
    assert re.search(rf"log: \S+/slurm_logs/\S+_train_supervised\S*/{jobid}\.log", text)
    assert f"JOB {jobid} ON " in text, text[-3000:]
    assert "CANCELLED AT" in text, text[-3000:]
    assert "results/logs/train_supervised/sup/dense/s0/seed0.log" in text
    state = sacct_rows(re.search(r"SLURM run ID: (\S+)", text).group(1))
    assert [r["State"].split()[0] for r in state if r["JobIDRaw"] == jobid] == [
        "CANCELLED"
    ]
    assert resume.exists(), "resume.pt must survive the cancelled job"
    epochs_done = len(torch.load(resume, weights_only=False)["histories"][0].epochs)
    assert 1 <= epochs_done < 10

    out = run(
        work, *PROFILES, "--rerun-incomplete", MODEL, configfiles=files, what="rerun"
    )
    assert out.endswith("[exit 0]"), out[-3000:]
    train_log = (
        work / "results/logs/train_supervised/sup/dense/s0/seed0.log"
    ).read_text()
    assert re.search(r"resumed from \S+resume\.pt at epoch \d+/10", train_log), (
        train_log
    )
    assert not resume.exists()

    assert wait(local, "local run") == 0, _tail(tmp_path / "local.log")
    a = torch.load(work / MODEL, weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "local" / MODEL, weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


BAD_ACCOUNT = "Invalid account or account/partition combination specified"
BAD_PARTITION = "invalid partition specified: nosuch"


@pytest.mark.slurm
@pytest.mark.parametrize(
    ("env", "cli", "message"),
    [
        ({"SBATCH_ACCOUNT": "nosuch", "SBATCH_PARTITION": "debug"}, [], BAD_ACCOUNT),
        (
            {"SBATCH_ACCOUNT": "prunelens", "SBATCH_PARTITION": "nosuch"},
            [],
            BAD_PARTITION,
        ),
        (
            {"SBATCH_PARTITION": "debug", "PRUNELENS_SLURM_GPUS": "1"},
            [],
            "Invalid generic resource (gres) specification",
        ),
        (
            {},
            ["--default-resources", "slurm_account=nosuch", "slurm_partition=debug"],
            BAD_ACCOUNT,
        ),
        (
            {"SBATCH_ACCOUNT": "prunelens"},
            ["--default-resources", "slurm_partition=nosuch"],
            BAD_PARTITION,
        ),
        (
            {"SBATCH_ACCOUNT": "prunelens", "SBATCH_PARTITION": "debug"},
            ["--set-resources", "train_supervised:slurm_partition=nosuch"],
            BAD_PARTITION,
        ),
    ],
    ids=[
        "account",
        "partition",
        "gpu",
        "cli-default-account",
        "cli-default-partition",
        "cli-rule-partition",
    ],
)
def test_bad_slurm_settings_stop_snakemake_before_any_submission(
    slurm, tmp_path, env, cli, message
):
    """Partition, account and GPUs as users give them (the environment or the
    command line), refused by Slurm itself (sbatch --test-only) before any job
    exists: plugin 2.8.0 would lose the error of a group job and hang."""
    files = [REPO / "config.yaml", write_config(tmp_path, SLURM_TINY)]
    out = run(
        tmp_path / "w",
        *PROFILES[:2],
        MODEL,
        *cli,
        configfiles=files,
        what="bad settings",
        timeout=120,
        env=_env(**env),
    )
    assert not out.endswith("[exit 0]")
    assert "profiles/slurm: Slurm refuses these settings" in out, out[-3000:]
    assert message in out, out[-3000:]
    assert "SLURM run ID" not in out


@pytest.fixture
def no_slurm_path(tmp_path) -> str:
    """PATH with Slurm's commands hidden: a machine where no Slurm is installed."""
    shadow = tmp_path / "bin"
    shadow.mkdir()
    hidden = {"sbatch", "srun", "squeue", "sacct", "sinfo", "scontrol", "scancel"}
    hidden |= {"sacctmgr", "sshare"}
    for d in os.environ["PATH"].split(os.pathsep):
        if not Path(d).is_dir() or d.startswith(str(REPO)):
            continue
        for f in Path(d).iterdir():
            link = shadow / f.name
            if f.name not in hidden and not link.exists():
                link.symlink_to(f)
    return f"{Path(SNAKEMAKE).parent}{os.pathsep}{shadow}"


@pytest.mark.slow
def test_a_dry_run_of_the_paper_grid_needs_no_slurm_and_groups_short_jobs(
    no_slurm_path, tmp_path
):
    # the paper grid; the archive only has to exist for a dry run
    files = [REPO / "config.yaml", write_config(tmp_path, {})]
    env = _env(PATH=no_slurm_path)
    work = tmp_path / "w"
    # every job printed (not --quiet rules): the groups are read from the jobs
    grouped = run(
        work, *PROFILES[:2], "all", "-n", configfiles=files, what="dry", env=env
    )
    assert grouped.endswith("[exit 0]"), grouped[-3000:]
    assert "Slurm is not installed on this machine" in grouped
    args = ["-c1", "all", "-n", "--quiet", "rules"]
    plain = run(work, *args, configfiles=files, what="dry", env=env)
    assert plain.endswith("[exit 0]"), plain[-3000:]
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", plain, re.M))
    n_jobs = int(stats["total"])
    # one Slurm job per dense model with its One-Shot fine-tunes, per GMP
    # model, per population, and one for every vote, table and figure
    groups = re.findall(r"Group job (\w+)", grouped)
    ungrouped = re.findall(r"^rule (\w+):", grouped, re.M)
    slurm_jobs = len(groups) + len([r for r in ungrouped if not r.startswith("all")])
    print(f"paper grid: {n_jobs - 1} jobs ungrouped, {slurm_jobs} Slurm jobs grouped")
    models = int(stats["train_supervised"]) + int(stats["pretrain_supcon"])
    # the per-schedule grid of config.yaml: 30 seeds x (Sup 1 + 6 GMP, SCL
    # 1 + 6 GMP + 4 delayed GMP) models, 13 + 17 populations
    assert groups.count("model") == models == 540
    assert groups.count("population") == int(stats["predict"]) == 30
    assert groups.count("report") == 1
    assert set(ungrouped) == {"all", "prepare_cifar10"}, (
        "add the new rule to a group in profiles/slurm/profile.yaml"
    )
    assert slurm_jobs == 572
    assert slurm_jobs < 0.5 * n_jobs


@pytest.mark.slow
def test_the_slurm_profile_without_slurm_fails_with_a_message(no_slurm_path, tmp_path):
    files = [REPO / "config.yaml", write_config(tmp_path, SLURM_TINY)]
    out = run(
        tmp_path / "w",
        *PROFILES[:2],
        "results/data/cifar10.npz",
        configfiles=files,
        what="no Slurm",
        timeout=120,
        env=_env(PATH=no_slurm_path),
    )
    assert not out.endswith("[exit 0]")
    assert "profiles/slurm: Slurm is not installed on this machine" in out
    assert "SLURM run ID" not in out


@pytest.mark.slow
def test_the_gpu_profile_without_a_gpu_fails_the_job_with_its_log(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    files = [REPO / "config.yaml", write_config(tmp_path, SLURM_TINY)]
    out = run(
        tmp_path / "w",
        "--profile",
        str(REPO / "profiles/gpu"),
        MODEL,
        configfiles=files,
        what="GPU profile",
        timeout=300,
    )
    assert not out.endswith("[exit 0]")
    assert "device 'cuda' requested but torch finds no CUDA device" in out
    # the failed job's log: one seed's, or its block's (profiles/gpu stacks
    # seeds_per_job seeds in one job)
    log = r"results/logs/train_supervised/sup/dense/s0/(seed0|seeds0-\d+)\.log"
    assert re.search(rf"Logfile {log}:", out), out[-3000:]


# ------------------------------------------- profiles/slurm/preflight.py alone


def _load_preflight():
    path = REPO / "profiles/slurm/preflight.py"
    spec = importlib.util.spec_from_file_location("preflight_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


preflight = _load_preflight()


@pytest.mark.parametrize(
    ("argv", "submits"),
    [
        (["all"], True),
        (["-c4", "-Rtrain_supervised", "all"], True),
        (["-sSnakefile", "all"], True),  # the "n" is part of a file name
        (["--report-after-run", "--report", "r.html", "all"], True),
        (["-c1", "--", "-n"], True),  # "-n" is a target here
        (["-n", "all"], False),
        (["-pn", "all"], False),
        (["--dry-r", "all"], False),  # an abbreviation, as Snakemake reads it
        (["--summary"], False),
        (["-D"], False),
        (["--lint"], False),
        (["--rulegraph", "mermaid-js"], False),
        (["--report", "r.html"], False),
        (["--unlock"], False),
    ],
)
def test_preflight_tells_runs_from_audits(argv, submits):
    assert preflight.submits(["snakemake", *argv]) is submits


def test_preflight_reads_slurm_resources_from_the_command_line():
    argv = ["snakemake", "all", "--default-resources", "mem_mb=500"]
    argv += ["slurm_account=nosuch", "slurm_partition='debug'", "--set-resources"]
    argv += ["train_supervised:slurm_partition=gpu", "predict:runtime=5"]
    argv += ['fig1:slurm_account="a" if attempt == 1 else "b"']  # per job: skipped
    assert preflight.command_line_resources(argv) == {
        "": {"slurm_account": "nosuch", "slurm_partition": "debug"},
        "train_supervised": {"slurm_partition": "gpu"},
    }
    assert preflight.command_line_resources(["snakemake", "all"]) == {}
    argv = ["snakemake", "--default-res=slurm_account=123", "all"]
    assert preflight.command_line_resources(argv) == {"": {"slurm_account": "123"}}


FAKE_SBATCH = """#!/bin/bash
# accepts partitions debug and gpu, account prunelens; logs each call
echo "$*" >> "$(dirname "$0")/calls"
while [ $# -gt 0 ]; do
  case $1 in
    -p) [ "$2" = debug ] || [ "$2" = gpu ] || {
          echo "sbatch: error: invalid partition specified: $2" >&2; exit 1; }
        shift ;;
    -A) [ "$2" = prunelens ] || {
          echo "sbatch: error: Batch job submission failed: Invalid account" \\
            "or account/partition combination specified" >&2; exit 1; }
        shift ;;
  esac
  shift
done
echo "sbatch: Job 1 to start at now on node vm" >&2
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sinfo and sbatch stand-ins first on PATH (the real cluster is tested
    above); returns the file that logs the sbatch calls."""
    fake = tmp_path / "fake-slurm"
    fake.mkdir()
    (fake / "sinfo").write_text("#!/bin/sh\necho 'debug*'\necho gpu\n")
    (fake / "sbatch").write_text(FAKE_SBATCH)
    for f in fake.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    return fake / "calls"


@pytest.mark.parametrize(
    ("env", "args", "refused"),
    [
        ({"SBATCH_ACCOUNT": "prunelens"}, [], None),
        ({}, ["--default-resources", "slurm_account=nosuch"], BAD_ACCOUNT),
        (
            {"SBATCH_ACCOUNT": "prunelens"},
            ["--default-resources", "slurm_partition=nosuch"],
            BAD_PARTITION,
        ),
        (
            {"SBATCH_ACCOUNT": "prunelens"},
            ["--set-resources", "predict:slurm_account=nosuch"],
            BAD_ACCOUNT,
        ),
        ({}, ["--default-res=slurm_account=prunelens,nosuch"], BAD_ACCOUNT),
        (
            {"SBATCH_ACCOUNT": "prunelens"},
            ["--set-resources", "predict:slurm_partition=gpu"],
            None,
        ),
    ],
)
def test_preflight_checks_each_partition_and_account_a_job_can_get(
    fake_slurm, capsys, env, args, refused
):
    argv = ["snakemake", "all", *args]
    if refused is None:
        assert preflight.settings(env, argv)["partition"] == "debug"
    else:
        with pytest.raises(preflight.SlurmProfileError) as err:
            preflight.settings(env, argv)
        assert "profiles/slurm: Slurm refuses these settings" in str(err.value)
        assert refused in str(err.value)
        # a dry run of the same command only warns
        preflight.settings(env, [*argv, "-n"])
        assert "only a warning: this command submits no jobs" in capsys.readouterr().err
    calls = fake_slurm.read_text().splitlines()
    assert all(c.startswith("--test-only ") for c in calls), calls


def test_preflight_checks_a_rule_with_the_defaults_it_does_not_replace(fake_slurm):
    argv = ["snakemake", "all", "--set-resources", "predict:slurm_partition=gpu"]
    preflight.settings({"SBATCH_ACCOUNT": "prunelens"}, argv)
    calls = [c.split(" --wrap")[0] for c in fake_slurm.read_text().splitlines()]
    assert calls == [
        "--test-only -t 1 -n 1 -p debug -A prunelens",
        "--test-only -t 1 -n 1 -p gpu -A prunelens",
    ]
