#!/usr/bin/env bash
# The model card's numbers for a model (default: pretrained/default), on the CPU, in one go:
#   self-reenactment FF at 1, 8 and 32 shots with both baselines, FT at 8 and 32 shots, the five portraits driven
#   by the five eval clips (contact sheets) and judged by ../shared/tools/facecheck.py, and the
#   crop-only speed against cpu-256. About 45 minutes on 2 cores.
#   MODEL=default OUT=runs/card FT_STEPS=40 FRAMES=8 MAX_FRAMES=120 bash scripts/evaluate_default.sh
set -euo pipefail
MODEL=${MODEL:-default}
OUT=${OUT:-runs/card}
DATA=${DATA:-../shared/data/eval}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
"$PY" -m talkinghead eval --model "$MODEL" --videos "$DATA"/driving/*.mp4 --shots 1 8 32 --modes ff \
    --frames "${FRAMES:-8}" --backend dlib -o "$OUT/eval-ff"
"$PY" -m talkinghead eval --model "$MODEL" --videos "$DATA"/driving/*.mp4 --shots ${FT_SHOTS:-8 32} --modes ft \
    --ft-steps "${FT_STEPS:-40}" --frames "${FRAMES:-8}" --backend dlib --no-baselines -o "$OUT/eval-ft"
"$PY" scripts/drive_portraits.py --model "$MODEL" --sources "$DATA"/source/* --driving "$DATA"/driving/*.mp4 \
    --max-frames "${MAX_FRAMES:-120}" -o "$OUT/portraits"
# the independent judge: one line per (portrait, clip)
: > "$OUT/facecheck.txt"
for src in "$DATA"/source/*; do
  for clip in "$DATA"/driving/*.mp4; do
    name="$(basename "${src%.*}")__$(basename "${clip%.*}")"
    echo "$name $("$PY" ../shared/tools/facecheck.py "$OUT/portraits/$name.mp4" "$clip" "$src")" | tee -a "$OUT/facecheck.txt"
  done
done
"$PY" benchmarks/families.py --default "$MODEL" ${PAPER:+--paper "$PAPER"} -o "$OUT"
