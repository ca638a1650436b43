#!/bin/bash
# One GPU check in one call, for a session lent a GPU (device tool): environment, the CUDA tests,
# issue 17's goals (python -m benchmarks.gpu), Dirac batching (issue 6's goal), the GPU tables
# (python -m benchmarks gpu), and with FULL=1 the default suite on the device's torch. Writes logs under $OUT. The device image lacks
# torchsde: first, here, `pip download --no-deps --only-binary=:all: -d .whl torchsde==0.2.6
# trampoline==0.1.2` (.whl ignored by git), then run with carry [".whl"]:
#   T_TOTAL=300 T_ALL=420 FULL=1 bash tools/gpu_check.sh
# T_TESTS / T_GOALS / T_DIRAC / T_TOTAL / T_ALL: seconds allowed (tests, goals, Dirac batching, up to
# the tables, in all).
export PYTHONUNBUFFERED=1
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/env.txt 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import torch, torchdiffeq, torchsde, flowrestore; print('torch', torch.__version__, torch.cuda.get_device_name(), 'cudnn.tf32', torch.backends.cudnn.allow_tf32, 'matmul.tf32', torch.backends.cuda.matmul.allow_tf32)" >> $OUT/env.txt 2>&1
nproc >> $OUT/env.txt; cat $OUT/env.txt
echo "== CUDA tests (t=$(( $(date +%s)-start ))s)"
timeout ${T_TESTS:-200} python3 -m pytest -q -p no:cacheprovider -rfE tests/core/test_cuda.py tests/core/test_cuda_families.py ${TEST_ARGS} > $OUT/cuda_tests.log 2>&1
echo "pytest rc=$?"; tail -45 $OUT/cuda_tests.log
echo "== GPU goals (t=$(( $(date +%s)-start ))s)"
timeout ${T_GOALS:-170} python3 -m benchmarks.gpu > $OUT/gpu_goals.log 2>&1; echo "goals rc=$?"; cat $OUT/gpu_goals.log | tail -25
echo "== Dirac batching on the GPU (t=$(( $(date +%s)-start ))s)"
timeout ${T_DIRAC:-90} python3 benchmarks/dirac_batching.py --device cuda --predictor both --batches 1 16 --repeats 3 > $OUT/dirac_batching.log 2>&1; echo "dirac rc=$?"; cat $OUT/dirac_batching.log | tail -12
left=$(( ${T_TOTAL:-500} - ($(date +%s)-start) ))
echo "== full GPU report, ${left}s left (t=$(( $(date +%s)-start ))s)"
if [ $left -gt 60 ]; then timeout $left python3 -m benchmarks gpu --out $OUT/gpu > $OUT/gpu_report.log 2>&1; echo "report rc=$?"; tail -5 $OUT/gpu_report.log; cat $OUT/gpu/results.md 2>/dev/null; fi
echo "== tables done (t=$(( $(date +%s)-start ))s)"
if [ -n "$FULL" ]; then
  left=$(( ${T_ALL:-560} - ($(date +%s)-start) ))
  echo "== full default suite on torch $(python3 -c 'import torch;print(torch.__version__)'), -n 14, ${left}s left"
  timeout $left python3 -m pytest -q -p no:cacheprovider -n 14 --timeout 200 -rfE > $OUT/full_suite.log 2>&1; echo "suite rc=$?"
  grep -E "^(FAILED|ERROR)|passed|failed" $OUT/full_suite.log | tail -40
fi
echo "== end (t=$(( $(date +%s)-start ))s)"
