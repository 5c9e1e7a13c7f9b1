#!/usr/bin/env bash
# The GPU checks of the speed issue in one prepared run, for a session that is lent a GPU
# machine (budget: about 8 of its 15 minutes; leave room for one rerun).
#
# Prepare here, once, from the repository root (the device machine has torch, pandas, pyarrow,
# scikit-learn, typer, rich and safetensors, but not pydantic; ../shared does not travel):
#
#   echo /.whl/ >> .git/info/exclude; echo /.gpu-data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl pydantic pydantic-core annotated-types typing-inspection
#   (keep one version of each; pydantic-core must be the version pydantic's METADATA pins)
#   mkdir -p .gpu-data && cp -r ../shared/datasets/nsl-kdd ../shared/datasets/kdd99 .gpu-data/
#
# Then: run(command="bash bench/gpu_session.sh", carry=[".whl", ".gpu-data"], timeout_s=560)
# and give_back. Everything lands in $OUT (bench/results/*_cuda.json, logs); the JSON names
# the card (device_name).
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 ADVSEC_DATA=$PWD/.gpu-data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: time one check, keep its log, go on when it fails
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}

# 1. the attack engine: eager limit, CUDA-graph limit, advsec defaults at 4,096 / 65,536 /
#    262,144 rows (done means: advsec >= 0.9 of the graph limit at every size)
step attacks 240 python3 bench/attacks.py --device cuda --rounds 7 --warmup 2 \
    --scaling 4096,65536,262144 --out "$OUT/attacks_cuda.json"
# 2. a whole study on the GPU
step run_nsl 150 python3 -m advsec run examples/nsl-kdd.toml --device cuda \
    --data-root .gpu-data --out /tmp/nsl-cuda --force
# 3. the reproduction on one GPU (target: under 30 s)
step reproduce 150 python3 -m advsec reproduce kdd99-adversarial-training \
    --root .gpu-data/kdd99 --device cuda --out /tmp/kdd99-cuda --force
# 4. the CUDA-only tests
step tests_cuda 90 python3 -m pytest -q -p no:cacheprovider tests/test_run_device.py \
    tests/test_cli_device.py tests/test_attacks_chunking.py
cp /tmp/nsl-cuda/metrics.json "$OUT/nsl_cuda_metrics.json" 2>/dev/null
cp /tmp/kdd99-cuda/metrics.json "$OUT/kdd99_cuda_metrics.json" 2>/dev/null
cat "$OUT/summary.txt"
