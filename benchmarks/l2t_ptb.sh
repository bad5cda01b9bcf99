#!/usr/bin/env bash
# The L2T-Hyena PTB comparison (configs/l2t_ptb.py): every arm x 2 seeds, train + evaluate,
# then collect benchmarks/results/l2t_ptb.json and the plot.
#   bash benchmarks/l2t_ptb.sh [RUNS_DIR] [STEPS]     (defaults /tmp/l2t_ptb, 400)
# Two lanes (one per seed) run side by side on the 2-core CPU. Re-running skips arms that are
# trained and evaluated, and resumes a half-trained one from its checkpoint.
# Budget measured here: README "L2T-Hyena on PTB".
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-/tmp/l2t_ptb}"
STEPS="${2:-400}"
ARMS="ce static25 static50 paper meta1 transformer meta5lstm"
lane() {
  local seed=$1
  for arm in ${ARMS}; do
    local cfg="configs/l2t_ptb.py:${arm},seed=${seed}" wd="${RUNS}/${arm}_s${seed}"
    if [[ -f "${wd}/eval/step_${STEPS}.json" ]]; then continue; fi
    mkdir -p "${wd}"
    python -m hyena_jax.main --config="${cfg}" --workdir="${wd}" --config.train.num_steps="${STEPS}" \
      >> "${wd}/train.log" 2>&1 || { echo "FAILED ${arm} seed ${seed}"; continue; }
    # Standard perplexity on valid and test; the paper's window metric on valid (every 16th
    # window start: an estimate of the stride-1 metric, 16x cheaper; README).
    python -m hyena_jax.evaluate --config="${cfg}" --workdir="${wd}" \
      --config.train.num_steps="${STEPS}" --config.eval.batch_size=256 \
      > "${wd}/eval.log" 2>&1 &&
    python -m hyena_jax.evaluate --config="${cfg}" --workdir="${wd}" \
      --config.train.num_steps="${STEPS}" --config.eval.batch_size=256 --config.eval.splits=valid \
      --config.eval.modes=l2t --config.eval.l2t_every=16 >> "${wd}/eval.log" 2>&1 ||
      echo "EVAL FAILED ${arm} ${seed}"
    echo "done ${arm} seed ${seed} $(date +%T)"
  done
}
lane 0 & lane 1 & wait
python benchmarks/l2t_results.py collect "${RUNS}" benchmarks/results/l2t_ptb.json
python benchmarks/l2t_results.py plot benchmarks/results/l2t_ptb.json benchmarks/results/l2t_ptb.png
