"""The quick run's wall time at two commits, e.g. before and after a change.

    python benchmarks/bench_quick.py BEFORE AFTER [--reps N]

Each commit is exported (``git archive``) into ``../.bench-quick-<case>``, beside the
repository (so ``../shared`` resolves as in a clone) and runs
``snakemake --profile profiles/quick all`` from nothing, with that export's
``src`` first on ``PYTHONPATH`` and this checkout's ``.venv``. The runs
alternate (BEFORE, AFTER, BEFORE, ...), so load from elsewhere falls on both.
Per run: the wall time, and per rule the summed wall time of its jobs (from
the timestamps Snakemake logs when a job starts and finishes; with 2 cores
two jobs overlap, so sums exceed the wall time). Writes
``benchmarks/results/cpu-<date>-quick.json``; ``bench_train.py --report``
puts it in BENCHMARKS.md. Needs a machine nothing else runs on: each run
takes minutes and uses every core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
# The training rules: the jobs whose speed the training loop sets.
TRAINING = (
    "train_supervised",
    "pretrain_supcon",
    "fit_linear_head",
    "prune_oneshot",
    "train_imp",
    "pretrain_imp",
)

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?rule (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_DONE = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def job_seconds(log: str) -> dict[str, list[float]]:
    """Per rule, each job's seconds from Snakemake's start to finish stamps."""
    stamp: dt.datetime | None = None
    rule: str | None = None
    started: dict[str, dt.datetime] = {}
    out: dict[str, list[float]] = defaultdict(list)
    for line in log.splitlines():
        if m := _STAMP.match(line):
            stamp = dt.datetime.strptime(" ".join(m[1].split()), "%a %b %d %H:%M:%S %Y")
        elif m := _RULE.match(line):
            rule = m[1]
        elif (m := _JOBID.match(line)) and rule is not None and stamp is not None:
            started[m[1]] = stamp
            rule = None
        elif (m := _DONE.match(line)) and m[1] in started and stamp is not None:
            out[m[2]].append((stamp - started.pop(m[1])).total_seconds())
    return dict(out)


_START = re.compile(r"^\s+Date: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$", re.M)


def from_log(commit: str, log: str) -> dict[str, Any]:
    """A finished run's record from its Snakemake log (.snakemake/log/):
    the wall time from the header's start to the last stamp (1 s steps)."""
    start = dt.datetime.strptime(_START.search(log)[1], "%Y-%m-%d %H:%M:%S")
    stamps = [m[1] for line in log.splitlines() if (m := _STAMP.match(line))]
    end = dt.datetime.strptime(" ".join(stamps[-1].split()), "%a %b %d %H:%M:%S %Y")
    jobs = job_seconds(log)
    return {
        "commit": commit,
        "wall_s": (end - start).total_seconds(),
        "jobs": {r: len(v) for r, v in jobs.items()},
        "rule_s": {r: sum(v) for r, v in jobs.items()},
        "training_s": sum(sum(jobs.get(r, [])) for r in TRAINING),
        "from_log": True,
    }


def run_quick(commit: str, scratch: Path) -> dict[str, Any]:
    """One quick run of ``commit`` from nothing in ``scratch``."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    env["PYTHONPATH"] = str(scratch / "src")
    cmd = [str(REPO / ".venv/bin/snakemake"), "--profile", "profiles/quick", "all"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"quick run of {commit} failed:\n{log[-3000:]}")
    jobs = job_seconds(log)
    return {
        "commit": commit,
        "wall_s": wall,
        "jobs": {r: len(v) for r, v in jobs.items()},
        "rule_s": {r: sum(v) for r, v in jobs.items()},
        "training_s": sum(sum(jobs.get(r, [])) for r in TRAINING),
        "load_avg": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--reps", type=int, default=1, help="runs of each commit")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--logs",
        nargs=2,
        type=Path,
        metavar=("BEFORE_LOG", "AFTER_LOG"),
        help="no runs: read finished runs' Snakemake logs (.snakemake/log/)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the last AFTER run's folder"
    )
    args = ap.parse_args(argv)

    def resolve(rev: str) -> str:
        cmd = ["git", "-C", str(REPO), "rev-parse", "--short", rev]
        return subprocess.run(
            cmd, check=True, capture_output=True, text=True
        ).stdout.strip()

    commits = {"before": resolve(args.before), "after": resolve(args.after)}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    if args.logs:  # runs already made: one Snakemake log per commit
        for case, log in zip(("before", "after"), args.logs, strict=True):
            runs[case].append(from_log(commits[case], log.read_text()))
        args.reps = 0
    # beside the repository, so that ../shared resolves as from a clone
    scratch = {c: REPO.parent / f".bench-quick-{c}" for c in ("before", "after")}
    try:
        for rep in range(args.reps):
            for case in ("before", "after"):
                print(f"rep {rep + 1}: {case} ({commits[case]}) ...", flush=True)
                got = run_quick(commits[case], scratch[case])
                print(
                    f"  {got['wall_s']:.1f} s wall, "
                    f"training jobs {got['training_s']:.0f} s",
                    flush=True,
                )
                runs[case].append(got)
    finally:
        for case, path in scratch.items():
            if not args.logs and not (args.keep and case == "after"):
                shutil.rmtree(path, ignore_errors=True)

    def median(case: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[case])

    data = {
        "device": "cpu",
        "only": ["quick"],  # an extra section for bench_train.py's report
        "rows": [],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "commits": commits,
        "runs": runs,
        "ratio": {
            "wall": median("after", "wall_s") / median("before", "wall_s"),
            "training": median("after", "training_s") / median("before", "training_s"),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    dest = args.out / f"cpu-{data['date'][:10]}-quick.json"
    dest.write_text(json.dumps(data, indent=2) + "\n")
    print(
        f"after / before: wall {data['ratio']['wall']:.3f}, training jobs "
        f"{data['ratio']['training']:.3f}; {dest}"
    )


def quick_section(files: list[Path]) -> list[str]:
    """BENCHMARKS.md's section: the newest quick-run comparison."""
    found = []
    for f in files:
        d = json.loads(f.read_text())
        if "quick" in (d.get("only") or []) and "ratio" in d:
            found.append((d["date"], f, d))
    if not found:
        return []
    _, path, d = max(found)
    lines = [
        "",
        "## Quick run (before and after a change)",
        "",
        "`python benchmarks/bench_quick.py BEFORE AFTER`: `snakemake --profile "
        "profiles/quick all` from nothing at each commit (exported, alternating), "
        "its wall time and the summed wall time of its training jobs (rules "
        + ", ".join(f"`{r}`" for r in TRAINING)
        + "; jobs overlap on 2 cores, so the sums exceed the wall time).",
        "",
        f"`{path.name}`: {d['cores']} cores; {d['date']}",
        "",
        "| case | commit | wall s | training jobs s | jobs |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for case in ("before", "after"):
        for r in d["runs"][case]:
            lines.append(
                f"| {case} | {r['commit']} | {r['wall_s']:.1f} | "
                f"{r['training_s']:.1f} | {sum(r['jobs'].values())} |"
            )
    lines += [
        "",
        f"After / before (medians): wall **{d['ratio']['wall']:.3f}**, "
        f"training jobs **{d['ratio']['training']:.3f}**.",
    ]
    return lines


if __name__ == "__main__":
    main()
