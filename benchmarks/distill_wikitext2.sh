#!/usr/bin/env bash
# Scavenging Hyena on WikiText-2 (README "Scavenging Hyena"): the teacher, the Hyena from
# scratch and the distilled students at equal student token budgets, then the table and plot.
#   bash benchmarks/distill_wikitext2.sh [RUNS_DIR]      (default /tmp/dw3)
# Students: scratch 300 steps; distilled = stage 1 (layers, 100 steps) + stage 2 (e2e, 200
# steps), for mode cumulative | teacher_forced x attention init on | off. Every run is evaluated
# on the whole valid and test splits (stage-1 students on valid: "no fine-tune"). Two jobs at a time
# on the 2-core CPU; re-running skips finished jobs. Budget measured here: ~90 min.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-/tmp/dw3}"
CFG=configs/distill_wikitext2.py
mkdir -p "${RUNS}"
train_eval() {  # NAME CONFIG_ARG [SPLITS]
  local wd="${RUNS}/$1"
  if ls "${wd}"/eval/step_*.json > /dev/null 2>&1; then return 0; fi
  mkdir -p "${wd}"
  python -m hyena_jax.main --config="${CFG}:$2" --workdir="${wd}" >> "${wd}/train.log" 2>&1 &&
    python -m hyena_jax.evaluate --config="${CFG}:$2" --workdir="${wd}" \
      --config.eval.batch_size=64 --config.eval.modes=nonoverlap \
      --config.eval.splits="${3:-valid,test}" > "${wd}/eval.log" 2>&1 ||
    { echo "FAILED $1"; touch "${wd}/FAILED"; return 1; }
  echo "done $1 $(date +%T)"
}
run_job() {
  set -uo pipefail
  local name=$1
  if [[ ${name} == teacher || ${name} == scratch ]]; then train_eval "${name}" "${name}"; return; fi
  local mode=${name%_attn*} attn=${name##*_attn} t="${RUNS}/teacher"
  until ls "${t}"/eval/step_*.json > /dev/null 2>&1; do
    [[ -f ${t}/FAILED ]] && { echo "FAILED ${name} (no teacher)"; return 1; }; sleep 20
  done
  train_eval "${name}/layers" "layers,teacher=${t},mode=${mode},attn_init=${attn}" valid &&
    train_eval "${name}/e2e" "e2e,teacher=${t},init=${RUNS}/${name}/layers,mode=${mode},attn_init=${attn}"
}
export -f run_job train_eval
export RUNS CFG
# The fourth arm, teacher_forced_attn0, is left out for the 2-core budget; add it here to run it.
printf '%s\n' teacher scratch cumulative_attn1 teacher_forced_attn1 cumulative_attn0 |
  xargs -P 2 -L 1 bash -c 'run_job "$@"' _
python benchmarks/distill_results.py "${RUNS}" benchmarks/results/distill_wikitext2.json \
  benchmarks/results/distill_wikitext2.png
