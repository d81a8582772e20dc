#!/usr/bin/env bash
# One-shot GPU check: the stacked-training and augmentation tests on CUDA,
# then the training/analysis benchmark. Run from the repository root of a
# copy of the repo on a CUDA machine (Python 3.12, torch 2.11 with CUDA,
# numpy; no snakemake needed):
#
#     OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Wheels missing from the machine are installed from .whl/ (see
# benchmarks/README.md) into /tmp/site, never over what is there. Everything
# it writes goes to $OUT: env.txt, pytest.txt, bench.txt, cuda-<date>.json and
# a BENCHMARKS.md preview. The whole run stays under 6 minutes: pytest is capped
# and the benchmark gets what is left, skipping (and recording) what no
# longer fits; its JSON is saved after every measurement.
set -uo pipefail

PY=${PYTHON:-python3}
OUT=${OUT:?set OUT to the folder for the results}
TOTAL_S=330 # the budget for this script; the caller's limit is 360 s
mkdir -p "$OUT"

# Wheels by import name; each is installed only where the import fails.
declare -A WHEELS=(
    [yaml]=pyyaml [tqdm]=tqdm [PIL]=pillow [torchvision]=torchvision
    [pytest]=pytest [pluggy]=pluggy [iniconfig]=iniconfig
    [packaging]=packaging [pygments]=pygments
)
missing=()
for mod in "${!WHEELS[@]}"; do
    "$PY" -c "import $mod" 2>/dev/null || missing+=("${WHEELS[$mod]}")
done
for name in ${missing[@]+"${missing[@]}"}; do
    # One wheel at a time, so that one that does not fit leaves the others.
    f=$(ls .whl/"$name"-*.whl 2>/dev/null | head -n 1)
    if [[ -z $f ]]; then
        echo "no wheel for $name in .whl/"
    elif ! PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --no-index \
        --no-deps --upgrade --disable-pip-version-check --target /tmp/site "$f"; then
        echo "could not install $f"
    fi
done
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
# A torchvision built for another CUDA major version raises at import; then
# the augmentation parity tests skip and the benchmark's baseline uses its
# per-image fallback (labelled so) instead.
if ! "$PY" -c "import torchvision.transforms" 2>"$OUT/torchvision_error.txt"; then
    echo "torchvision unusable here (see torchvision_error.txt); removed"
    rm -rf /tmp/site/torchvision /tmp/site/torchvision-*
else
    rm -f "$OUT/torchvision_error.txt"
fi
export PYTHONPATH=src:$PYTHONPATH

{
    echo "missing before install: ${missing[*]:-none}"
    nvidia-smi -L 2>&1
    "$PY" - <<'EOF'
import importlib, platform, torch
print("python", platform.python_version(), "torch", torch.__version__,
      "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0))
for m in ("numpy", "PIL", "torchvision", "yaml", "tqdm", "pytest", "sklearn"):
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"), mod.__file__)
    except Exception as exc:
        print(m, "absent:", type(exc).__name__, exc)
EOF
} 2>&1 | tee "$OUT/env.txt"

tests=(tests/test_stacked.py tests/test_augment.py tests/test_losses.py tests/test_train.py)
# test_depth compares with scikit-learn at import time; its wheels (with
# scipy, ~45 MB) are not shipped, so it runs only where sklearn exists.
if "$PY" -c "import sklearn" 2>/dev/null; then
    tests+=(tests/test_depth.py)
else
    echo "tests/test_depth.py skipped: no scikit-learn" | tee -a "$OUT/env.txt"
fi
timeout 110 "$PY" -m pytest -q -x -p no:cacheprovider "${tests[@]}" 2>&1 |
    tee "$OUT/pytest.txt"
pytest_rc=${PIPESTATUS[0]}

left=$((TOTAL_S - SECONDS))
echo "benchmark: $left s left of $TOTAL_S"
timeout $((left - 5)) "$PY" benchmarks/bench_train.py --device cuda --out "$OUT" \
    --budget-s $((left - 30)) 2>&1 | tee "$OUT/bench.txt"
bench_rc=${PIPESTATUS[0]}

echo "pytest exit $pytest_rc, benchmark exit $bench_rc, $SECONDS s in all"
exit $((pytest_rc || bench_rc))
