#!/usr/bin/env bash
# There (the GPU machine, repo root, .gpu carried): train for at most SECONDS_LIMIT seconds, checkpoint, and put the
# run's log, options and last sample grid (run-info.tar) and an export (E/G fp16, D int8, split in 15 MiB
# parts, with config.json) in $OUT: 6 files, so a benchmark JSON still fits the 8 that come back.
# Run again to continue: the run folder stays on the machine while it is held. Usage:
#   SECONDS_LIMIT=520 STEPS=40000 BATCH=8 bash scripts/gpu/chunk.sh
set -uo pipefail
export PYTHONPATH=$PWD/.gpu/site:$PWD PYTHONUNBUFFERED=1
RUN=${RUN:-/tmp/gpu-run}
OUT=${OUT:-/tmp/out}
args=(--data .gpu/cache -o "$RUN" --steps "${STEPS:-40000}" --batch "${BATCH:-8}" --k "${K:-8}" --device "${DEVICE:-cuda}"
      --lr-g "${LR_G:-1e-4}" --lr-d "${LR_D:-2e-4}" --checkpoint-every 500 --sample-every 1000 --log-every 50
      --workers "${WORKERS:-8}" --content stlpips --no-progress
      --loss-weight content_stlpips=1.5 --loss-weight pixel=10)   # the shipped model's recipe
# a new run continues the shipped model (INIT_FROM, default pretrained/default: warp-256, every part fits);
# INIT_FROM=none starts CONFIG (default warp-256) afresh; CONFIG with INIT_FROM takes the parts that fit
if [ -f "$RUN/checkpoint.pt" ]; then args+=(--resume)
elif [ "${INIT_FROM:-pretrained/default}" = none ]; then args+=(--config "${CONFIG:-warp-256}")
else args+=(--init-from "${INIT_FROM:-pretrained/default}" ${CONFIG:+--config "$CONFIG"} --freeze-embedder
            --loss-weight mouth_pixel=20 --loss-weight mouth_content=2 --focus-targets 0.5); fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
# SIGTERM makes the trainer checkpoint at the next step boundary and exit 143 (no set -e: the export below runs)
timeout -s TERM "${SECONDS_LIMIT:-520}" python3 -m talkinghead train "${args[@]}" 2>&1 | tail -n 20
# the shipped format (E/G fp16, D int8), as scripts/export_default.py writes pretrained/default
python3 scripts/export_default.py --run "$RUN" -o "$RUN/export"
mkdir -p "$OUT"
split -b 15M -d -a 1 "$RUN/export/model.safetensors" "$OUT/model.part"
cp "$RUN/export/config.json" "$OUT/config.json"
# at most 8 files come back per call: the small ones travel as one tar
last=$(ls "$RUN"/samples/*.png 2>/dev/null | tail -n 1)
tar -cf "$OUT/run-info.tar" -C "$RUN" log.csv training_options.json ${last:+-C "$(dirname "$last")" "$(basename "$last")"}
ls -l "$OUT"
