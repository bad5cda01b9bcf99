#!/usr/bin/env bash
# The default recall config at vocab 10 / 20 / 30 (everything else unchanged: 2 layers x 64,
# L=64, 3000 steps) at lr 1e-3, the default's lr when the logged sweep ran.
# Writes benchmarks/results/recall_vocab_sweep.json.
# About 2.5 minutes per vocab on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/hyena_recall_sweep}
for v in ${VOCABS:-10 20 30}; do
  rm -rf "$out/v$v"
  python -m hyena_jax.main --config=configs/default.py --workdir="$out/v$v" \
    --config.data.vocab_size="$v" --config.optim.lr=1e-3 > "$out.v$v.log" 2>&1
done
python - "$out" ${VOCABS:-10 20 30} <<'PY'
import json, sys
out, vocabs = sys.argv[1], sys.argv[2:]
res = {}
for v in vocabs:
  rows = [json.loads(l) for l in open(f'{out}/v{v}/metrics.jsonl')]
  rep = json.load(open(f'{out}/v{v}/final_report.json'))
  res[v] = {'final_report': rep,
            'eval': [{k: r[k] for k in ('step', 'loss', 'accuracy')} for r in rows
                     if r['split'] == 'eval']}
json.dump({'command': 'bash benchmarks/recall_vocab_sweep.sh', 'runs': res},
          open('benchmarks/results/recall_vocab_sweep.json', 'w'), indent=1)
for v in vocabs:
  print(v, res[v]['final_report']['eval_accuracy'], res[v]['final_report']['wall_time_s'])
PY
