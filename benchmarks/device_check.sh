#!/usr/bin/env bash
# The GPU checks of a session lent a CUDA machine, in one call of at most 8 minutes:
#   1. the CUDA-marked tests (tests/core/test_cuda.py),
#   2. benchmarks/speed.py on cuda: predict at batch 1, predict_batch at batch 32, the bare
#      network under AMP at batch 1 and 32, 300 AMP training steps,
#   3. a short real training run under a one-process torchrun (NCCL), AMP on,
# then one summary. Logs and JSON go to $OUT (the device tool's folder) or results/device.
#
# Usage (device tool): bash benchmarks/device_check.sh
# The device image has torch, scipy, scikit-image, tifffile, Pillow, tqdm and pytest but no
# pydicom: put its wheel in .whl/ and carry it (see the device README), e.g.
#   pip download --no-deps --only-binary=:all: -d .whl pydicom
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/device}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
summary=()
started=$(date +%s)

check() {  # check NAME SECONDS COMMAND...: run with a time limit, log to $out/NAME.log
  local name=$1 limit=$2 t0 rc
  shift 2
  t0=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  summary+=("$name: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)"), $(($(date +%s) - t0)) s")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >>"$out/gpu.txt" 2>&1

check cuda_tests 150 python3 -m pytest tests/core/test_cuda.py -m cuda -q -p no:cacheprovider \
  -o filterwarnings= -o addopts=
check speed 150 python3 benchmarks/speed.py --device cuda --runs 30 --batch-size 32 \
  --train-steps 300 --finetune-images 0 --json "$out/speed.json"
check synth 60 python3 -m training synth --n 48 --seed 77 --out /tmp/nfdp-data
check torchrun 120 torchrun --standalone --nproc_per_node 1 -m training fit --data /tmp/nfdp-data \
  --out /tmp/nfdp-run --epochs 3 --batch-size 16 --device cuda --seed 0

echo "== device check ($(($(date +%s) - started)) s) =="
cat "$out/gpu.txt"
printf '%s\n' "${summary[@]}"
tail -n 3 "$out/cuda_tests.log"
grep -E "predict|AMP|training step|CUDA peak" "$out/speed.md" 2>/dev/null || tail -n 20 "$out/speed.log"
tail -n 5 "$out/torchrun.log"
