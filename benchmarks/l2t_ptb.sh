#!/usr/bin/env bash
# The L2T-Hyena PTB comparison (configs/l2t_ptb.py): every arm x 2 seeds, train + evaluate,
# then collect benchmarks/results/l2t_ptb.json and the w-trajectory plot.
#   bash benchmarks/l2t_ptb.sh [RUNS_DIR] [STEPS]     (defaults /tmp/l2t_ptb, 400)
# Two lanes (one per seed) run side by side on the 2-core CPU; each re-run resumes/skips.
# Budget measured here: ~80 min for 300 steps (README "L2T-Hyena on PTB").
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-/tmp/l2t_ptb}"
STEPS="${2:-400}"
ARMS="ce static25 static50 paper meta1 transformer meta5lstm"
COMMON=(--config.train.num_steps="${STEPS}")
lane() {
  local seed=$1
  for arm in ${ARMS}; do
    local cfg="configs/l2t_ptb.py:${arm},seed=${seed}" wd="${RUNS}/${arm}_s${seed}"
    mkdir -p "${wd}"
    python -m hyena_jax.main --config="${cfg}" --workdir="${wd}" "${COMMON[@]}" \
      > "${wd}/train.log" 2>&1 || { echo "FAILED ${arm} seed ${seed}"; continue; }
    python -m hyena_jax.evaluate --config="${cfg}" --workdir="${wd}" "${COMMON[@]}" \
      --config.eval.modes=nonoverlap,l2t --config.eval.l2t_every=16 \
      --config.eval.batch_size=256 > "${wd}/eval.log" 2>&1 || echo "EVAL FAILED ${arm} ${seed}"
    echo "done ${arm} seed ${seed} $(date +%T)"
  done
}
lane 0 & lane 1 & wait
python benchmarks/l2t_results.py collect "${RUNS}" benchmarks/results/l2t_ptb.json
python benchmarks/l2t_results.py plot benchmarks/results/l2t_ptb.json benchmarks/results/l2t_ptb_w.png
