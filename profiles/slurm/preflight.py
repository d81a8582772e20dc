"""Checks that profiles/slurm/profile.yaml runs while Snakemake reads it.

Before any job is submitted: put bin/sacct first on PATH (the CANCELLED fix),
find the partition, and ask Slurm itself (`sbatch --test-only`) whether the
partition, account and GPU request are accepted: from the environment
(SBATCH_PARTITION, SBATCH_ACCOUNT, PRUNELENS_SLURM_GPUS) and from the command
line (`--default-resources slurm_partition=... slurm_account=...`,
`--set-resources RULE:slurm_partition=...`). A mistake stops Snakemake here
with Slurm's own message. This also keeps snakemake-executor-plugin-slurm
2.8.0 away from a silent hang: when its account check or submission fails for
a *group* job, the exception is lost and Snakemake waits for ever; with the
partition and the accounts checked first, that has nothing left to fail on.

Dry runs and other commands that submit nothing (-n, --summary, --lint, ...)
only warn, so they work on machines without Slurm.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Snakemake options (argparse `dest`) after which it submits nothing.
NO_SUBMIT = (
    "dryrun", "touch", "summary", "detailed_summary", "lint", "dag", "rulegraph",
    "filegraph", "d3dag", "list_rules", "list_target_rules", "list_changes",
    "list_input_changes", "list_params_changes", "list_code_changes",
    "list_untracked", "list_conda_envs", "unlock", "cleanup_metadata",
    "cleanup_shadow", "delete_all_output", "delete_temp_output",
    "print_compilation", "containerize", "export_cwl", "archive",
    "generate_unit_tests", "conda_create_envs_only", "conda_cleanup_envs",
    "container_cleanup_images", "draft_notebook", "edit_notebook",
)  # fmt: skip
# Fallback when Snakemake's parser is not at hand: the same as tokens.
NO_SUBMIT_TOKENS = {
    "-n", "--dry-run", "--dryrun", "-t", "--touch", "-S", "--summary", "-D",
    "--detailed-summary", "--lint", "--dag", "--rulegraph", "--filegraph",
    "--d3dag", "-l", "--list", "--list-rules", "--lt", "--list-target-rules",
    "--lc", "--list-changes", "--li", "--list-input-changes", "--lp",
    "--list-params-changes", "--lu", "--list-untracked", "--unlock", "--cm",
    "--cleanup-metadata", "--delete-all-output", "--delete-temp-output",
    "--print-compilation", "--containerize", "--export-cwl", "--archive",
    "--generate-unit-tests", "--report", "-h", "--help", "-v", "--version",
}  # fmt: skip
RESOURCES = ("slurm_partition", "slurm_account")


class SlurmProfileError(SystemExit):
    """Stops Snakemake with this message alone (exit status 1): a SystemExit
    passes Snakemake's handlers, which would bury an ordinary exception from
    a profile under a screen of usage text."""


def parse_command_line(argv: list[str]) -> argparse.Namespace | None:
    """``argv`` read by Snakemake's own parser (None if that is not possible).

    Snakemake has already parsed this very command line once (before it read
    the profiles), so this parse succeeds the same way; it resolves
    abbreviations (``--dry-r``), combined short flags (``-pn``), option values
    and base64-encoded resources exactly as Snakemake does.
    """
    try:
        from snakemake.cli import get_argument_parser

        with contextlib.redirect_stderr(io.StringIO()):  # argparse's usage text
            return get_argument_parser().parse_args(argv[1:])
    except (Exception, SystemExit):
        return None


def submits(argv: list[str], args: argparse.Namespace | None = None) -> bool:
    """Whether this Snakemake command line would submit jobs."""
    args = parse_command_line(argv) if args is None else args
    if args is None:  # a plain scan of the tokens
        return not any(a.split("=", 1)[0] in NO_SUBMIT_TOKENS for a in argv[1:])
    if args.report and not args.report_after_run:
        return False
    return not any(getattr(args, dest, None) for dest in NO_SUBMIT)


def _plain_value(raw: object) -> str | None:
    """A resource value given on the command line, as Snakemake reads it:
    environment variables expanded, a quoted string unquoted, an unknown name
    kept as text. None for a Python expression (decided per job: not checked).
    """
    if raw is None:
        return None
    text = os.path.expanduser(os.path.expandvars(str(raw))).strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text  # Snakemake: a NameError or SyntaxError means a plain string
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    value = str(value).strip()
    return value if re.fullmatch(r"[\w.,\- ]+", value) else None


def _lookup(resources: object, name: str) -> str | None:
    try:
        res = resources[name]  # type: ignore[index]  # snakemake Resources
    except (KeyError, TypeError, IndexError):
        return None
    return _plain_value(getattr(res, "raw", None))


def command_line_resources(
    argv: list[str], args: argparse.Namespace | None = None
) -> dict[str, dict[str, str]]:
    """slurm_partition and slurm_account given on the command line.

    Returns ``{"": {...}}`` for ``--default-resources`` (only when given
    there) and ``{rule: {...}}`` for ``--set-resources RULE:NAME=VALUE``.
    Values that are Python expressions are left out (not checkable here).
    """
    args = parse_command_line(argv) if args is None else args
    out: dict[str, dict[str, str]] = {}
    if args is None:
        return out
    default = getattr(args, "default_resources", None)
    if default is not None:
        out[""] = {n: v for n in RESOURCES if (v := _lookup(default, n)) is not None}
    for rule, resources in (getattr(args, "set_resources", None) or {}).items():
        given = {n: v for n in RESOURCES if (v := _lookup(resources, n)) is not None}
        if given:
            out[rule] = given
    return out


def put_sacct_fix_on_path() -> None:
    """bin/sacct first on PATH: see its header (CANCELLED by <uid>)."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    if str(HERE / "bin") not in path:
        os.environ["PATH"] = os.pathsep.join([str(HERE / "bin"), *path])


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 1, "", f"{cmd[0]}: no answer in 60 s")


def settings(environ: dict[str, str] | None = None, argv: list[str] | None = None):
    """Partition, account and GPU request for the profile, checked with Slurm.

    Returns a dict with ``partition`` and ``account`` (None: leave unset),
    ``gpus`` (int) and ``gpu_model`` (None or a model name): the values the
    profile passes as default resources. Every partition/account combination
    a job can get (environment, ``--default-resources``, ``--set-resources``)
    is checked with ``sbatch --test-only``.
    """
    env = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    args = parse_command_line(argv)
    real = submits(argv, args)

    def fail(message: str) -> None:
        message = f"profiles/slurm: {message}"
        if real:
            raise SlurmProfileError(message)
        print(f"{message} (only a warning: this command submits no jobs)",
              file=sys.stderr)  # fmt: skip

    try:
        gpus = int(env.get("PRUNELENS_SLURM_GPUS") or 0)
    except ValueError:
        fail(f"PRUNELENS_SLURM_GPUS={env['PRUNELENS_SLURM_GPUS']!r} is not a number")
        gpus = 0
    out = {
        "partition": env.get("SBATCH_PARTITION") or None,
        "account": env.get("SBATCH_ACCOUNT") or None,
        "gpus": gpus,
        "gpu_model": env.get("PRUNELENS_SLURM_GPU_MODEL") or None,
    }
    given = command_line_resources(argv, args)

    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        fail(
            "Slurm is not installed on this machine (no sbatch/sinfo on PATH); "
            "use profiles/local or profiles/gpu here"
        )
        # never let the plugin look the partition or account up (see above)
        out["partition"] = out["partition"] or "no-slurm-on-this-machine"
        out["account"] = None
        return out
    cli_default = given.get("", {})
    if out["partition"] is None and "slurm_partition" not in cli_default:
        proc = _run(["sinfo", "-h", "-o", "%P"])
        if proc.returncode != 0:
            fail(f"Slurm does not answer: {proc.stderr.strip()}")
            out["partition"] = "slurm-did-not-answer"
            out["account"] = None
            return out
        default = [p for p in proc.stdout.split() if p.endswith("*")]
        if not default:
            fail("the cluster has no default partition: set SBATCH_PARTITION")
            return out
        out["partition"] = default[0].rstrip("*")

    # What the jobs are submitted with: the environment's values (through the
    # profile's default-resources, or sbatch's own SBATCH_*), replaced by
    # --default-resources and, per rule, --set-resources from the command line.
    origin = {
        "slurm_partition": "SBATCH_PARTITION"
        if env.get("SBATCH_PARTITION")
        else "the cluster's default",
        "slurm_account": "SBATCH_ACCOUNT"
        if env.get("SBATCH_ACCOUNT")
        else "your default",
    }
    base = {"slurm_partition": out["partition"], "slurm_account": out["account"]}
    for name, value in cli_default.items():
        base[name], origin[name] = value, "--default-resources"
    checks = [("", base, gpus)]
    checks += [(rule, {**base, **res}, 0) for rule, res in given.items() if rule]
    seen = set()
    for rule, res, n_gpus in checks:
        partition, account = res["slurm_partition"], res["slurm_account"]
        # the plugin takes "a,b" as several accounts, each checked
        accounts = [a for a in re.split(r"[,\s]+", account) if a] if account else []
        for one in accounts or [None]:
            if (partition, one, n_gpus) in seen:
                continue
            seen.add((partition, one, n_gpus))
            proc, test = _test_only(partition, one, n_gpus, out["gpu_model"])
            if proc.returncode == 0:
                continue
            source = (
                f"--set-resources of rule {rule}"
                if rule
                else f"partition from {origin['slurm_partition']}, "
                f"account from {origin['slurm_account']}"
            )
            fail(
                f"Slurm refuses these settings (partition {partition!r}, "
                f"account {one!r}, GPUs {n_gpus}; {source}): "
                f"{proc.stderr.strip()}\n"
                f"  checked with: {' '.join(test)}\n"
                "  set SBATCH_PARTITION, SBATCH_ACCOUNT, PRUNELENS_SLURM_GPUS or "
                "fix --default-resources/--set-resources (README: Running anywhere)"
            )
            if not rule:
                out["account"] = None  # the plugin's own check would hang groups
    return out


def _test_only(
    partition: str | None, account: str | None, gpus: int, gpu_model: str | None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    test = ["sbatch", "--test-only", "-t", "1", "-n", "1"]
    if partition:
        test += ["-p", partition]
    if account:
        test += ["-A", account]
    if gpus:
        test.append(f"--gpus={gpu_model + ':' if gpu_model else ''}{gpus}")
    return _run([*test, "--wrap", "true"]), test
