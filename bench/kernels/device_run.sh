#!/usr/bin/env bash
# One short lease on a GPU machine whose image already holds torch and triton: every kernel benchmark
# (checked against its reference, then timed) and the seed models end to end, each stage under its own time
# limit, results copied to OUTDIR as they land. Wheels for what the image lacks (pydantic, this project's
# transformers pin) may sit in .whl/.
#
#     bash bench/kernels/device_run.sh OUTDIR [KERNEL_SECONDS] [MODEL_SECONDS] [PYTEST_K]   (0 seconds: skip a stage)
set -u
out=${1:?OUTDIR}
kernel_s=${2:-330}
model_s=${3:-170}
select=${4:-}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
collect() { cp bench/results/nvidia-*.json bench/results/nvidia-*-models.md bench/results/nvidia-*-kernels.md "$out"/ \
  2>/dev/null; true; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu --format=csv \
  | tee "$out/env.txt"
python3 -c "import torch, triton, transformers, sys; print('python', sys.version.split()[0], 'torch', torch.__version__,
'triton', triton.__version__, 'transformers', transformers.__version__)" | tee -a "$out/env.txt"

[ "$kernel_s" -gt 0 ] && timeout "$kernel_s" python3 -m pytest bench/kernels --deselect bench/kernels/bench_models.py::test_models_end_to_end \
  -k "$select" -p no:cacheprovider -o addopts='' -q -rfE --timeout 120 --benchmark-columns=median --junitxml="$out/kernels.xml" 2>&1 \
  | tee "$out/kernels.log" | grep -vE "^\s*$" | tail -40
collect
[ "$model_s" -gt 0 ] && timeout "$model_s" python3 bench/kernels/bench_models.py --layers 2 2>&1 | tee "$out/models.log" | tail -20
collect
cat "$out"/nvidia-*-kernels.md 2>/dev/null   # the table the pytest run wrote from its rows
