#!/usr/bin/env bash
# GPU checks, for a machine with an NVIDIA GPU: what was built and found, the CUDA tests
# (tests/test_cuda.py, marked gpu) and the GPU benchmark against torch with the device's copy
# bandwidth measured in the same run. Needs fastxent built with CUDA (pip install . with nvcc on
# PATH, or -DFASTXENT_CUDA=ON) and a CUDA build of torch.
#   bash bench/gpu/run.sh [--quick] [--json FILE]     (arguments go to bench_gpu.py)
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m fastxent info
python -c "import fastxent, sys; sys.exit(0 if fastxent.cuda_available() else
         'no CUDA device or no CUDA build: nothing to run')"
python -m pytest -m gpu tests/test_cuda.py -q -p no:cacheprovider
python bench/gpu/bench_gpu.py "$@"
