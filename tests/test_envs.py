"""envs/requirements.txt is the one source of versions; the conda file agrees."""

import yaml
from conftest import REPO


def _pins(lines):
    return sorted(
        ln.strip()
        for ln in lines
        if ln.strip() and not ln.strip().startswith(("#", "-e"))
    )


def test_conda_env_pins_equal_the_venv_pins():
    req = _pins((REPO / "envs/requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs/prunelens.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == req
    assert all("==" in p for p in req), "every requirement is pinned exactly"


def test_no_default_profile():
    # Snakemake would load profiles/default over --profile profiles/slurm.
    assert not (REPO / "profiles/default").exists()
