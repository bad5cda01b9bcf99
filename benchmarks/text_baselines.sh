#!/usr/bin/env bash
# PTB and WikiText-2 Hyena baselines on this 2-core CPU: train, evaluate, collect, plot.
#   bash benchmarks/text_baselines.sh [RUNS_DIR]      (default /tmp/runs)
# Budget measured here: PTB ~80 min and WikiText-2 ~45 min when each has the machine alone
# (they were run concurrently in one session); evaluation adds ~5 min each.
# Each train command resumes if re-run on the same workdir.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-/tmp/runs}"
OUT=benchmarks/results
for name in ptb_hyena wikitext2_hyena; do
  python -m hyena_jax.main --config="configs/${name}.py" --workdir="${RUNS}/${name}"
  python -m hyena_jax.evaluate --config="configs/${name}.py" --workdir="${RUNS}/${name}"
done
# The L2T-Hyena paper's metric (every 64-token window at stride 1) on PTB valid, for reference;
# merged into the same eval/step_N.json.
python -m hyena_jax.evaluate --config=configs/ptb_hyena.py --workdir="${RUNS}/ptb_hyena" \
  --config.eval.splits=valid --config.eval.modes=l2t --config.eval.batch_size=256
for name in ptb_hyena wikitext2_hyena; do
  python benchmarks/text_results.py collect "${RUNS}/${name}" "${OUT}/${name}.json"
done
python benchmarks/text_results.py plot "${OUT}/text_baselines.png" \
  "${OUT}/ptb_hyena.json" "${OUT}/wikitext2_hyena.json"
