#!/usr/bin/env bash
# The GPU run, sized for under 10 minutes on one H100 (not yet run on one) (the device tool lends 15 minutes a session):
#   (a) trainer throughput on the GPU for a few backbones (bench_trainer.py: model alone / this
#       trainer / a DataLoader pipeline); the gpu space's models eager, under torch.compile and
#       with CUDA graphs, as model FLOP/s and a share of the GPU's bf16 peak (bench_speed.py);
#       several trainings packed on one GPU with fractional GPUs (bench_packing.py: 1, 2, 4);
#   (b) a real search + top-3 ensemble retrain on the full data (spaces/gpu.yaml), which prints
#       PrivateTest accuracy.
# On the device machine, after the three staging calls ../shared/gpu/stage.sh prints:
#   export PYTHONPATH=/tmp/site:$PWD; bash bench/gpu.sh /root/fer/fer2013.csv.gz
# Everything it writes goes under $OUT (the device tool brings that folder back), else results/gpu.
# Try it on a CPU first with the small sample and tiny settings:
#   GPU_SH_QUICK=1 bash bench/gpu.sh ../shared/data/fer2013-small.csv.gz
set -uo pipefail
DATA=${1:-/root/fer/fer2013.csv.gz}
OUT=${OUT:-results/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export FER_CACHE_DIR="$OUT/.cache"   # parse the CSV once for every step below
quick=${GPU_SH_QUICK:-0}
start=$(date +%s)
log() { echo "[gpu.sh $(( $(date +%s) - start ))s] $*"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"; } | tee "$OUT/device.txt"
"$PY" -c 'import torch, timm, ray, optuna; print("torch", torch.__version__, "timm", timm.__version__, "ray", ray.__version__, "optuna", optuna.__version__, "cuda", torch.cuda.is_available())' | tee -a "$OUT/device.txt" || exit 1

if [ "$quick" = 1 ]; then steps=2; reps=1; packs="1 2"; secs=5; else steps=30; reps=3; packs="1 2 4"; secs=15; fi

# (a) throughput
log "(a) trainer throughput"
for spec in "resnet18 48" "resnet18 96" "resnet34 96"; do
  set -- $spec
  timeout 120 "$PY" bench/bench_trainer.py --backbone "$1" --input-size "$2" --steps $steps \
    --repeats $reps --num-workers 4 --threads 4 --data "$DATA" 2>&1 | tee -a "$OUT/a_trainer.log" | grep -E "^RESULT|img/s"
done
timeout 120 "$PY" bench/bench_trainer.py --seed-configs --steps $steps --repeats $reps --threads 4 \
  --data "$DATA" 2>&1 | tee -a "$OUT/a_trainer.log" | grep -E "^RESULT"
log "(a) the trainer against the GPU's bf16 peak: eager / torch.compile / + CUDA graphs"
if [ "$quick" = 1 ]; then speed=(--device cpu --arms after); else speed=(--device cuda); fi
# one model: each compiled arm costs ~30-60 s of compilation out of the session's 15 minutes
timeout 150 "$PY" bench/bench_speed.py step "${speed[@]}" --data "$DATA" --steps $steps --repeats $reps \
  --set backbone=resnet18 input_size=96 batch_size=256 2>&1 | tee "$OUT/a_speed.log" | grep -E "^RESULT|^device"
log "(a) packing"
timeout 150 "$PY" bench/bench_packing.py --backbone resnet18 --input-size 64 --packs $packs \
  --seconds $secs --data "$DATA" 2>&1 | tee "$OUT/a_packing.log" | grep -E "^RESULT|packed"

# (b) search + retrain
log "(b) search + retrain on $DATA"
extra=()
if [ "$quick" = 1 ]; then extra=(--num-samples 2 --max-epochs 1 --retrain-epochs 1); fi
t0=$(date +%s)
timeout 420 "$PY" -m search.run spaces/gpu.yaml --data "$DATA" --output "$OUT" --name search \
  --verbose 1 "${extra[@]}" > "$OUT/b_search.log" 2>&1
rc=$?
wall=$(( $(date +%s) - t0 ))
grep -E "^(best trial|ensemble of|retraining|PrivateTest)" "$OUT/b_search.log"
if [ -f "$OUT/search/summary.json" ]; then
  "$PY" - "$OUT/search/summary.json" "$wall" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
keys = ["trials_run", "trials_stopped_early", "total_epochs", "best_public_test_accuracy",
        "private_test_accuracy", "private_test_accuracy_tta", "ensemble_private_test_accuracy",
        "ensemble_private_test_accuracy_tta", "wall_seconds"]
print("RESULT gpu_search " + " ".join(f"{k}={s[k]}" for k in keys if k in s) + f" script_wall_s={sys.argv[2]}")
PY
else
  echo "RESULT gpu_search failed rc=$rc (see $OUT/b_search.log)"; tail -20 "$OUT/b_search.log"
fi
rm -rf "$OUT/.cache" "$OUT"/search/t[0-9]*-*/checkpoint_* 2>/dev/null
log "done"
