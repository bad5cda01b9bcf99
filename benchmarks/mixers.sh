#!/usr/bin/env bash
# Attention vs Hyena vs Longhorn at equal parameters (README "Mixers compared"):
#   synthetic: associative recall (configs/recall_mixers.py) and MQAR (configs/mqar.py) at
#              each sequence length in LENGTHS, 2,000 steps, seed 0;
#   ptb:       the Longhorn arm of configs/l2t_ptb.py (400 steps, seeds 0 and 1) beside the
#              attention and Hyena arms of the L2T table (benchmarks/results/l2t_ptb.json).
#   bash benchmarks/mixers.sh [RUNS_DIR] [WHAT]    (defaults /tmp/mixers, "recall mqar ptb")
# Jobs run two at a time on the 2-core CPU (longest first); re-running skips finished jobs.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-/tmp/mixers}"
WHAT="${2:-recall mqar ptb}"
LENGTHS="${LENGTHS:-64 128}"
SYN_STEPS="${SYN_STEPS:-2000}"
mkdir -p "${RUNS}"
jobs=()
if [[ " ${WHAT} " == *" ptb "* ]]; then
  for seed in 0 1; do jobs+=("ptb longhorn ${seed}"); done
fi
for L in ${LENGTHS}; do
  for mixer in longhorn hyena attention; do
    for task in recall mqar; do
      if [[ " ${WHAT} " == *" ${task} "* ]]; then jobs+=("${task} ${mixer} ${L}"); fi
    done
  done
done
run_job() {
  set -uo pipefail
  local task=$1 mixer=$2 arg=$3 cfg wd steps
  if [[ ${task} == ptb ]]; then
    cfg="configs/l2t_ptb.py:${mixer},seed=${arg}"; wd="${RUNS}/ptb/${mixer}_s${arg}"; steps=400
  else
    local file=recall_mixers; [[ ${task} == mqar ]] && file=mqar
    cfg="configs/${file}.py:${arg},mixer=${mixer}"; wd="${RUNS}/${task}/${mixer}_L${arg}"
    steps=${SYN_STEPS}
  fi
  if [[ -f "${wd}/final_report.json" && ( ${task} != ptb || -f "${wd}/eval/step_${steps}.json" ) ]]; then
    return 0
  fi
  mkdir -p "${wd}"
  python -m hyena_jax.main --config="${cfg}" --workdir="${wd}" --config.train.num_steps="${steps}" \
    >> "${wd}/train.log" 2>&1 || { echo "FAILED ${task} ${mixer} ${arg}"; return 0; }
  if [[ ${task} == ptb ]]; then
    python -m hyena_jax.evaluate --config="${cfg}" --workdir="${wd}" \
      --config.train.num_steps="${steps}" --config.eval.batch_size=256 > "${wd}/eval.log" 2>&1 ||
      echo "EVAL FAILED ${task} ${mixer} ${arg}"
  fi
  echo "done ${task} ${mixer} ${arg} $(date +%T)"
}
export -f run_job
export RUNS SYN_STEPS
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'run_job "$@"' _
python benchmarks/mixers_results.py "${RUNS}"
