#!/usr/bin/env bash
# Fetch into .whl/ (git-ignored) the wheels that gpu_check.sh installs on a
# CUDA machine whose image has torch, numpy, pandas, scikit-learn, seaborn,
# numba, pytest, pyyaml and tqdm but not the workflow's own needs: Snakemake 9
# and its dependencies, umap-learn, pynndescent, jsonschema, pypdf. Python
# 3.12, manylinux x86_64; the versions are those of this project's venv.
# A package published only as a source archive is built into a wheel here.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=()
for p in 2_17 2_24 2_27 2_28 2_34; do platforms+=(--platform "manylinux_${p}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for w in \
    snakemake==9.27.1 snakemake-interface-common==1.23.0 \
    snakemake-interface-executor-plugins==9.4.0 \
    snakemake-interface-logger-plugins==2.1.0 \
    snakemake-interface-report-plugins==1.3.0 \
    snakemake-interface-scheduler-plugins==2.0.2 \
    snakemake-interface-storage-plugins==4.4.1 \
    annotated-types==0.8.0 argparse-dataclass==2.0.0 conda-inject==1.3.2 \
    ConfigArgParse==1.9.0 connection_pool==0.0.3 docutils==0.22.4 dpath==2.2.0 \
    fastjsonschema==2.22.3 gitdb==4.0.12 GitPython==3.2.1 greenlet==3.5.6 \
    humanfriendly==10.0 immutables==0.21 jsonschema==4.26.0 \
    jsonschema-specifications==2025.9.1 jupyter_core==5.9.1 nbformat==5.11.1 \
    platformdirs==4.14.8 PuLP==3.3.2 pydantic==2.14.4 pydantic_core==2.50.5 \
    referencing==0.37.0 rpds-py==2026.9.1 smart_open==7.7.1 smmap==5.0.3 \
    SQLAlchemy==2.0.58 sqlmodel==0.0.37 tenacity==9.2.1 throttler==1.2.3 \
    traitlets==5.16.1 typing-inspection==0.4.5 tzdata==2026.6 yte==1.9.4 \
    umap-learn==0.5.12 pynndescent==0.7.0 pypdf==7.1.1; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d .whl "$w" 2>/dev/null ||
        python3 -m pip wheel -q --no-deps -w .whl "$w"
done
du -sh .whl
