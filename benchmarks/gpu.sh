#!/usr/bin/env bash
# Every GPU check in one run, for a machine with an NVIDIA GPU and CuPy: the `gpu` tests first, then the
# GPU benchmarks beside PyTorch (their torch columns stay empty where torch has no CUDA). Run from anywhere:
#     bash benchmarks/gpu.sh            # results in benchmarks/results/, also copied to $OUT when it is set
# Each part runs even if one before it failed; the exit status is the tests'.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"      # the checkout itself, installed or not
results=benchmarks/results
python -c "import minires; assert minires.cuda_is_available(), 'no CUDA device that CuPy can use'" || exit 1
python -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$results/gpu-tests.txt"
status=${PIPESTATUS[0]}
python benchmarks/bench_train.py --device cuda --out train-gpu
python benchmarks/bench_models.py --device cuda --cases resnet18:224:64,resnet50:224:32 --out models-gpu
python benchmarks/bench_ops.py --device cuda --batch-imagenet 32 --network --out gpu
if [ -n "${OUT:-}" ]; then
    cp "$results"/gpu-tests.txt "$results"/*gpu*.md "$results"/*gpu*.json "$OUT"/ 2>/dev/null
fi
exit "$status"
