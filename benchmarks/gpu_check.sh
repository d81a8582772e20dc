#!/usr/bin/env bash
# One-shot GPU check, sized for one short lease of a CUDA machine (Python 3.12,
# torch with CUDA, numpy; no Snakemake): run from the repository root of a
# copy of the repo,
#
#     OUT=/some/dir bash benchmarks/gpu_check.sh
#
# 1. every test marked `gpu` (CPU/GPU parity, stacked training, augmentation
#    without host syncs, k-NN), 2. the training/analysis benchmark
#    (bench_train.py --device cuda), 3. the quick workflow end to end through
#    profiles/gpu on a synthetic archive, timed. Wheels for what the machine
#    lacks (Snakemake and its needs, umap-learn, jsonschema; see
#    benchmarks/README.md) are installed from .whl/ into /tmp/site, never over
#    what is there. Results: $OUT/cuda-<date>.json, $OUT/BENCHMARKS.md and
#    $OUT/logs.tar.gz (env, pytest, benchmark and workflow logs, tables).
set -uo pipefail

PY=${PYTHON:-python3}
OUT=${OUT:?set OUT to the folder for the results}
TOTAL_S=${TOTAL_S:-540} # the budget for this script; leave the caller a margin
LOGS=$(mktemp -d)
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" >/dev/null; then
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --no-index --no-deps \
        --no-compile --disable-pip-version-check --target /tmp/site .whl/*.whl ||
        echo "could not install the wheels in .whl/"
fi
export PYTHONPATH=$PWD/src:/tmp/site:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1

{
    nvidia-smi -L 2>&1
    "$PY" - <<'EOF'
import importlib, platform, torch
print("python", platform.python_version(), "torch", torch.__version__,
      "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0))
for m in ("numpy", "torchvision", "sklearn", "umap", "snakemake", "jsonschema"):
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"))
    except Exception as exc:
        print(m, "absent:", type(exc).__name__, exc)
EOF
} 2>&1 | tee "$LOGS/env.txt"

# 1. the GPU tests (Slurm tests need a cluster; the workflow tests a venv)
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs \
    --ignore=tests/test_slurm.py --ignore=tests/test_workflow.py tests 2>&1 |
    tee "$LOGS/pytest.txt"
pytest_rc=${PIPESTATUS[0]}

# 2. the benchmark, leaving 170 s for the workflow
left=$((TOTAL_S - SECONDS - 170))
echo "benchmark: $left s"
timeout $((left + 20)) "$PY" benchmarks/bench_train.py --device cuda --out "$OUT" \
    --budget-s "$left" 2>&1 | tee "$LOGS/bench.txt"
bench_rc=${PIPESTATUS[0]}

# 3. the quick scale through profiles/gpu (seeds_per_job 15: one stacked Sup
#    job per cell for the 3 quick seeds), on a synthetic archive
work=/tmp/wf
mkdir -p $work
"$PY" -c "from prunelens.data import make_synthetic_images_archive as m
m('$work/syn.tar.gz', n_train_per_class=100, n_test_per_class=100)"
printf 'data:\n  images_archive: %s\n  images_sha256: null\n' "$work/syn.tar.gz" \
    >$work/device.yaml
left=$((TOTAL_S - SECONDS - 10))
echo "workflow: $left s"
start=$SECONDS
timeout "$left" "$PY" -m snakemake all --profile profiles/gpu --configfile \
    config.yaml profiles/quick/quick.yaml $work/device.yaml >"$LOGS/workflow.txt" 2>&1
wf_rc=$?
echo "workflow exit $wf_rc in $((SECONDS - start)) s" | tee -a "$LOGS/workflow.txt"
grep -E "^[a-z_0-9]+ +[0-9]+$|steps \(100%\) done|Error" "$LOGS/workflow.txt" | tail -40
mkdir -p "$LOGS/results"
cp -r results/tables results/logs "$LOGS/results/" 2>/dev/null
find results/models -name metrics.json -path "*sup*" | head -20 |
    tar -cf "$LOGS/results/sup-metrics.tar" -T - 2>/dev/null

echo "pytest exit $pytest_rc, benchmark exit $bench_rc, workflow exit $wf_rc," \
    "$SECONDS s in all" | tee -a "$LOGS/env.txt"
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
exit $((pytest_rc || bench_rc || wf_rc))
