#!/usr/bin/env bash
# Training rehearsal on one GPU (issue 14, part 6; docs/benchmarks.md, "Training rehearsal at real
# size"): ViT-B posetrack18_vitb on a synthetic PoseTrack18-layout set of 1280x720 JPEGs, bf16,
# batch 32 and 64, loader workers = CPU cores, torch.compile off and on, DDP on one GPU, stage 2,
# with the GPU's utilisation sampled every 0.5 s, then the loader alone at the same settings.
#
# Made for the device tool's GPU machines: their python3 has CUDA torch, OpenCV, SciPy, PyYAML,
# TensorBoard, Matplotlib and safetensors but no network, so cmpose is not installed: it runs from
# this checkout (PYTHONPATH). Run it once from the repository root:
#
#     bash scripts/gpu_rehearsal.sh          # about 5-8 minutes; give the call timeout_s 570
#
# Results: $OUT/gpu_rehearsal.json (every run's report), $OUT/gpu_rehearsal.log, $OUT/gpu_util.csv
# ($OUT defaults to outputs/bench/gpu). A run that fails (e.g. out of memory) is logged and the
# next one starts; a run is skipped when the script's time budget (BUDGET_S, 480 s) is spent.
# Then `cmpose bench infer` on the GPU ($OUT/bench_infer.json).
#
# DRY_RUN=1 shrinks everything (tiny model, 2 steps, batch 2 and 4, 2 workers, CPU unless a GPU is
# there) to check the commands on a CPU; SKIP_COMPILE=1 leaves out the compiled run.
set -u -o pipefail

OUT=${OUT:-outputs/bench/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
WORK=${WORK:-/tmp/cmpose-gpu-rehearsal}
RES=$WORK/json
rm -rf "$RES"
mkdir -p "$RES"
LOG=$OUT/gpu_rehearsal.log
: >"$LOG"
BUDGET_S=${BUDGET_S:-480}
NPROC=$(nproc)

if [ "${DRY_RUN:-0}" = 1 ]; then
    VIDEOS=2 FRAMES=6 PEOPLE=2 STEPS=2 WARMUP=1 B1=2 B2=4 WORKERS=2 LIMIT=300
    DEVICE=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
    MODEL=(--set model.backbone.size=tiny --set model.backbone.embed_dim=32 --set model.backbone.depth=1
        --set model.backbone.num_heads=2 --set model.backbone.stem_channels=8
        --set "model.head.deconv_channels=[16, 16]" --set model.encoder.depth=1
        --set model.encoder.num_heads=2 --set model.encoder.keypoint_head_hidden=32
        --set model.aux.decoder_hidden=32 --set model.fte.depth=1 --set model.fte.num_heads=2
        --set "data.crop.image_size=[48, 64]" --set "data.crop.heatmap_size=[12, 16]")
else
    # 12 videos (10 train, 2 val) x 30 frames x 8 people: 2400 training clips, 37 steps of 64 per
    # epoch, so the 25 steps of a run stay in one epoch (no worker restart inside the timing).
    VIDEOS=12 FRAMES=30 PEOPLE=8 STEPS=20 WARMUP=5 B1=32 B2=64 WORKERS=$NPROC LIMIT=200
    DEVICE=cuda
    MODEL=()
fi

{
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC, $(uname -m), $NPROC CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
    nvidia-smi -L 2>&1 || echo "no nvidia-smi"
    $PY -c "import torch, cv2, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda,
        'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        'cv2', cv2.__version__, 'numpy', numpy.__version__)"
} >>"$LOG" 2>&1

SMI_PID=
if command -v nvidia-smi >/dev/null && [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw,clocks.sm \
        --format=csv -lms 500 >"$OUT/gpu_util.csv" 2>&1 &
    SMI_PID=$!
fi

run() {  # run NAME [cmpose bench train options...]
    local name=$1
    shift
    if [ "$SECONDS" -ge "$BUDGET_S" ]; then
        echo "== $name skipped: ${SECONDS}s of the ${BUDGET_S}s budget spent" | tee -a "$LOG"
        return
    fi
    echo "== $name start at ${SECONDS}s: $*" >>"$LOG"
    timeout "$LIMIT" "$PY" -m cmpose bench train --config posetrack18_vitb "${MODEL[@]}" \
        --device "$DEVICE" --amp bf16 --videos "$VIDEOS" --frames "$FRAMES" --people "$PEOPLE" \
        --data-dir "$WORK/data" --steps "$STEPS" --warmup "$WARMUP" --out "$RES/$name.json" "$@" \
        >>"$LOG" 2>&1
    echo "== $name rc=$? at ${SECONDS}s" | tee -a "$LOG"
}

# The first run writes the synthetic set (its time is in the log); the others reuse it.
run mcl_b${B1} --stages mcl --batch-size "$B1" --workers "$WORKERS"
run mcl_b${B2} --stages mcl --batch-size "$B2" --workers "$WORKERS"
run mcl_b${B2}_ddp --stages mcl --batch-size "$B2" --workers "$WORKERS" --ddp
run fte_b${B2} --stages fte --batch-size "$B2" --workers "$WORKERS"
if [ "${SKIP_COMPILE:-0}" != 1 ]; then
    run mcl_b${B2}_compile --stages mcl --batch-size "$B2" --workers "$WORKERS" --compile
fi

[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null

# What the loader alone delivers with the same workers, batch and frame size (steady state).
if [ "$SECONDS" -lt "$BUDGET_S" ]; then
    echo "== loader start at ${SECONDS}s" >>"$LOG"
    timeout 120 "$PY" -m cmpose bench loader --image-size 1280x720 --sampler grouped \
        --workers "$WORKERS" --batch-size "$B2" --videos 8 --frames "$FRAMES" --people "$PEOPLE" \
        --repeats 2 --work-dir "$WORK/loader" --out "$RES/loader.json" >>"$LOG" 2>&1
    echo "== loader rc=$? at ${SECONDS}s" | tee -a "$LOG"
fi

# Video inference speed (issue 17, part 7): CM-Pose against the single-frame ViT per person-frame,
# token reuse against recomputing every clip, tiny / small / base, 1 and 5 people, bf16.
if [ "$SECONDS" -lt "$BUDGET_S" ]; then
    echo "== bench infer start at ${SECONDS}s" >>"$LOG"
    if [ "${DRY_RUN:-0}" = 1 ]; then INFER=(--sizes tiny --frames 3 --repeats 1); else INFER=(--frames 24 --base-frames 24); fi
    timeout 150 "$PY" -m cmpose bench infer --device "$DEVICE" --amp "$([ "$DEVICE" = cuda ] && echo bf16 || echo off)" \
        "${INFER[@]}" --out "$OUT/bench_infer.json" >>"$LOG" 2>&1
    echo "== bench infer rc=$? at ${SECONDS}s" | tee -a "$LOG"
    grep -A 12 '^| device' "$LOG" | tail -8
fi

# One JSON with every run, and a short table (the device tool returns the output's end).
$PY - "$RES" "$OUT/gpu_rehearsal.json" <<'EOF'
import json, sys
from pathlib import Path

from cmpose.utils.io import atomic_write_json

res, out = Path(sys.argv[1]), Path(sys.argv[2])
runs = {p.stem: json.loads(p.read_text()) for p in sorted(res.glob("*.json"))}
atomic_write_json(out, runs)
for name, r in runs.items():
    if name == "loader":
        x = r["results"][0]
        print(f"loader alone: {x['median_clips_per_s']:.0f} clips/s ({x['workers']} workers, batch {x['batch_size']})")
        continue
    for s in r["stages"]:
        m = s["memory"]
        print(
            f"{name:18s} {r['device']['name']}: {s['clips_per_s']:7.1f} clips/s, step {s['step_s']:.3f} s "
            f"(data wait {s['data_wait_s']:.3f}, compute {s['compute_s']:.3f}), GPU max "
            f"{m.get('gpu_max_allocated_mb', float('nan')):.0f} MB, RSS {m['main_peak_mb']:.0f} / "
            f"{m['with_workers_peak_mb'] or 0:.0f} MB, warm-up {s['warmup_s']:.1f} s, "
            f"loss {s['losses']['total']:.4f}"
        )
print(f"{len(runs)} runs in {out}")
EOF
echo "== done at ${SECONDS}s" | tee -a "$LOG"
