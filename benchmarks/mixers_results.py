"""Collect benchmarks/mixers.sh runs into committed JSON and print the README tables.

  python benchmarks/mixers_results.py RUNS_DIR

Writes benchmarks/results/mixers_synthetic.json (recall and MQAR: held-out accuracy by mixer
and length) and benchmarks/results/mixers_ptb.json (the Longhorn PTB arm, collected like the
L2T table; the attention and Hyena rows come from benchmarks/results/l2t_ptb.json).
"""

import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l2t_results  # pylint: disable=g-import-not-at-top,wrong-import-position

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
MIXERS = ('attention', 'hyena', 'longhorn')


def synthetic(runs: str) -> list[dict]:
  rows = []
  for task in ('recall', 'mqar'):
    for wd in sorted(glob.glob(os.path.join(runs, task, '*_L*'))):
      report_path = os.path.join(wd, 'final_report.json')
      if not os.path.exists(report_path):
        continue
      mixer, L = os.path.basename(wd).rsplit('_L', 1)
      report = json.load(open(report_path))
      metrics = [json.loads(l) for l in open(os.path.join(wd, 'metrics.jsonl')) if l.strip()]
      evals = [[r['step'], round(r['accuracy'], 4)] for r in metrics if r['split'] == 'eval']
      train = [r for r in metrics if r['split'] == 'train']
      rows.append({'task': task, 'mixer': mixer, 'seq_len': int(L),
                   'num_params': report['num_params'], 'steps': report['step'],
                   'eval_accuracy': round(report['eval_accuracy'], 4),
                   'best_eval_accuracy': max(a for _, a in evals) if evals else None,
                   'train_seconds': round(train[-1]['time'] - train[0]['time'], 1),
                   'eval_accuracy_by_step': evals})
  return rows


def table(rows: list[dict]) -> str:
  lengths = sorted({r['seq_len'] for r in rows})
  out = ['| task | mixer | params | ' + ' | '.join(f'L={L}' for L in lengths) + ' |',
         '|---|---|---|' + '---|' * len(lengths)]
  for task in ('recall', 'mqar'):
    for mixer in MIXERS:
      rs = {r['seq_len']: r for r in rows if r['task'] == task and r['mixer'] == mixer}
      if not rs:
        continue
      cells = [f"{100 * rs[L]['eval_accuracy']:.1f}" if L in rs else '—' for L in lengths]
      params = next(iter(rs.values()))['num_params']
      out.append(f'| {task} | {mixer} | {params:,} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(out)


def main(runs: str) -> None:
  rows = synthetic(runs)
  if rows:
    with open(os.path.join(OUT, 'mixers_synthetic.json'), 'w') as f:
      json.dump({'command': f'bash benchmarks/mixers.sh {runs}', 'runs': rows}, f, indent=1)
    print(table(rows))
  ptb = [l2t_results._run(wd) for wd in sorted(glob.glob(os.path.join(runs, 'ptb', '*_s*')))  # pylint: disable=protected-access
         if os.path.exists(os.path.join(wd, 'final_report.json'))]
  if ptb:
    with open(os.path.join(OUT, 'mixers_ptb.json'), 'w') as f:
      json.dump({'command': f'bash benchmarks/mixers.sh {runs} ptb', 'runs': ptb}, f, indent=1)
    l2t = json.load(open(os.path.join(OUT, 'l2t_ptb.json')))['runs']
    print('| mixer | params | valid ppl | test ppl | train s |')
    print('|---|---|---|---|---|')
    for arm, runs_ in (('transformer', l2t), ('ce', l2t), ('longhorn', ptb)):
      rs = [r for r in runs_ if r['arm'] == arm]
      if rs:
        v = l2t_results._ms([r['valid_nonoverlap'] for r in rs])  # pylint: disable=protected-access
        t = l2t_results._ms([r['test_nonoverlap'] for r in rs])  # pylint: disable=protected-access
        s = l2t_results._ms([r['train_seconds'] for r in rs], 0)  # pylint: disable=protected-access
        print(f"| {arm} | {rs[0]['num_params']:,} | {v[0]} ± {v[1]} | {t[0]} ± {t[1]} | {s[0]} |")


if __name__ == '__main__':
  main(sys.argv[1])
