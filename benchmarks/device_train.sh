#!/usr/bin/env bash
# One device call (at most 10 minutes) that runs the GPU checks and trains the default model
# further on freshly simulated films:
#   1. simulate N mixed films (flat generator + projected CT-like anatomy) on 12 CPU cores,
#      while benchmarks/device_check.sh runs the CUDA tests, speed.py and torchrun,
#   2. fine-tune the bundled model on them on the GPU (AMP, batch 32) until the deadline,
#   3. export the best checkpoint (float16) and return it in 15 MB parts with the logs.
# Join the parts here with `cat model.pt.part-* > candidate.pt`, then calibrate and evaluate
# it on the CPU (runs/eval.sh) before it may replace the bundled model.
#
# Usage (device tool, timeout_s 600, carry .whl): bash benchmarks/device_train.sh [N] [EPOCHS]
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
out=${OUT:-results/device}
n=${1:-4800}
epochs=${2:-30}
deadline=$((started + ${DEADLINE_S:-545}))
mkdir -p "$out" /tmp/logs
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

python3 -m training synth --n "$n" --style mixed --seed 0 --out /tmp/films --workers 12 \
  >/tmp/logs/synth.log 2>&1 &
synth=$!
OUT=/tmp/logs/check timeout 270 bash benchmarks/device_check.sh
wait $synth || echo "synth FAILED: $(tail -n 3 /tmp/logs/synth.log)"
echo "== films ready after $(($(date +%s) - started)) s"

timeout $((deadline - $(date +%s))) python3 -m training fit --data /tmp/films --out /tmp/run \
  --init napari_nfdp/models/spine_default.pt --epochs "$epochs" --lr 3e-4 --batch-size 32 \
  --workers 14 --device cuda --seed 7 >/tmp/logs/fit.log 2>&1
echo "== fit exit $? after $(($(date +%s) - started)) s"
tail -n 4 /tmp/logs/fit.log
cp /tmp/run/log.jsonl /tmp/run/config.json /tmp/logs/ 2>/dev/null
python3 -m training export --checkpoint /tmp/run/best.pt --out /tmp/candidate.pt \
  >/tmp/logs/export.log 2>&1 && (cd /tmp && sha256sum candidate.pt && split -b 15M candidate.pt "$out/model.pt.part-")
tar czf "$out/logs.tgz" -C /tmp logs
python3 - <<'PY'
import json
rows = [json.loads(line) for line in open("/tmp/logs/log.jsonl")] if __import__("os").path.exists("/tmp/logs/log.jsonl") else []
for r in rows:
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if not isinstance(v, (dict, list))})
PY
echo "== done after $(($(date +%s) - started)) s"
