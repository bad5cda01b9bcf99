"""Collect the L2T PTB comparison (benchmarks/l2t_ptb.sh) into one JSON, a table and a plot.

  python benchmarks/l2t_results.py collect RUNS_DIR OUT.json     (prints the README table)
  python benchmarks/l2t_results.py plot OUT.json OUT.png

RUNS_DIR holds one workdir per run, named ARM_sSEED.
"""

import glob
import json
import math
import os
import statistics
import sys

ORDER = ('transformer', 'ce', 'static25', 'static50', 'paper', 'meta1', 'meta5lstm')
LABEL = {'transformer': 'Transformer (attention), CE', 'ce': 'Hyena, CE only',
         'static25': 'Hyena + static logit-L2, w = 0.25',
         'static50': 'Hyena + static logit-L2, w = 0.5',
         'paper': 'L2T paper mode (DLN + memory teacher)',
         'meta1': 'L2T meta mode, K = 1, Adam teacher',
         'meta5lstm': 'L2T meta mode, K = 5, LSTM teacher'}
# Validation perplexity from the paper's abstract (their window metric, their budget).
PAPER = {'transformer': 121.28, 'ce': 110.5, 'paper': 102.6}
TRAJ_KEYS = ('loss', 'ce', 'w_mean', 'w_std', 'heldout_loss', 'meta_grad_norm')


def _run(wd: str) -> dict:
  name = os.path.basename(wd)
  arm, seed = name.rsplit('_s', 1)
  rows = [json.loads(l) for l in open(os.path.join(wd, 'metrics.jsonl')) if l.strip()]
  evals = sorted(glob.glob(os.path.join(wd, 'eval', 'step_*.json')),
                 key=lambda p: int(p.rsplit('_', 1)[1][:-5]))
  ev = json.load(open(evals[-1]))['results'] if evals else {}
  report = json.load(open(os.path.join(wd, 'final_report.json')))
  config = json.load(open(os.path.join(wd, 'config.json')))
  # Train wall time: first to last train row (excludes startup and the final evaluation).
  train_rows = [r for r in rows if r['split'] == 'train']
  get = lambda split, mode: ev.get(split, {}).get(mode, {}).get('perplexity')
  return {
      'arm': arm, 'seed': int(seed), 'num_params': report['num_params'],
      'steps': report['step'], 'l2t': config.get('l2t'),
      'valid_nonoverlap': get('valid', 'nonoverlap'), 'test_nonoverlap': get('test', 'nonoverlap'),
      'valid_l2t_metric': get('valid', 'l2t'),
      'l2t_metric_window_every': ev.get('valid', {}).get('l2t', {}).get('window_every'),
      'train_seconds': round(train_rows[-1]['time'] - train_rows[0]['time'], 1),
      'run_seconds': report['wall_time_s'],
      'trajectory': [{k: (round(r[k], 5) if k in r else None) for k in ('step',) + TRAJ_KEYS}
                     for r in train_rows],
      'train_time_eval': [[r['step'], round(r['loss'], 5)] for r in rows if r['split'] == 'eval'],
  }


def _ms(xs, digits=2):
  xs = [x for x in xs if x is not None]
  if not xs:
    return None
  return [round(statistics.mean(xs), digits),
          round(statistics.stdev(xs), digits) if len(xs) > 1 else 0.0]


def collect(runs_dir: str, out: str) -> None:
  runs = [_run(wd) for wd in sorted(glob.glob(os.path.join(runs_dir, '*_s*')))
          if os.path.exists(os.path.join(wd, 'final_report.json'))]
  summary = {}
  for arm in ORDER:
    rs = [r for r in runs if r['arm'] == arm]
    if not rs:
      continue
    last_w = [r['trajectory'][-1]['w_mean'] for r in rs
              if r['trajectory'][-1]['w_mean'] is not None]
    summary[arm] = {k: _ms([r[k] for r in rs]) for k in
                    ('valid_nonoverlap', 'test_nonoverlap', 'valid_l2t_metric', 'train_seconds')}
    summary[arm].update(seeds=sorted(r['seed'] for r in rs), num_params=rs[0]['num_params'],
                        steps=rs[0]['steps'], final_w_mean=_ms(last_w, 4),
                        paper_valid=PAPER.get(arm))
  with open(out, 'w') as f:
    json.dump({'summary': summary, 'runs': runs,
               'paper_note': 'paper_valid: the L2T-Hyena abstract (their 4.8M model, 10 epochs, '
                             'their window metric); not the same budget as these runs'}, f,
              indent=1)
  print(f'wrote {out}\n')
  fmt = lambda v, d=1: '—' if v is None else (f'{v[0]:.{d}f} ± {v[1]:.{d}f}' if v[1]
                                               else f'{v[0]:.{d}f}')
  print('| arm | params | valid ppl | test ppl | paper metric (valid) | final mean w | '
        'train s | paper (valid, their metric) |')
  print('|---|---|---|---|---|---|---|---|')
  for arm, s in summary.items():
    print(f'| {LABEL[arm]} | {s["num_params"]:,} | {fmt(s["valid_nonoverlap"])} | '
          f'{fmt(s["test_nonoverlap"])} | {fmt(s["valid_l2t_metric"])} | '
          f'{fmt(s["final_w_mean"], 3) if s["final_w_mean"] else "—"} | '
          f'{fmt(s["train_seconds"])} | {s["paper_valid"] or "—"} |')


def plot(path: str, out: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = json.load(open(path))['runs']
  fig, (ax_w, ax_p) = plt.subplots(1, 2, figsize=(10, 3.6))
  colors = dict(zip(ORDER, plt.rcParams['axes.prop_cycle'].by_key()['color']))
  for r in runs:
    c, ls = colors[r['arm']], '-' if r['seed'] == 0 else '--'
    tr = [t for t in r['trajectory'] if t['w_mean'] is not None]
    if tr and r['arm'] not in ('ce', 'transformer'):
      s = [t['step'] for t in tr]
      m = [t['w_mean'] for t in tr]
      sd = [t['w_std'] for t in tr]
      ax_w.plot(s, m, ls, color=c, lw=1, label=f'{r["arm"]} s{r["seed"]}')
      ax_w.fill_between(s, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)],
                        color=c, alpha=0.12)
    ev = r['train_time_eval']
    ax_p.plot([e[0] for e in ev], [math.exp(e[1]) for e in ev], ls + 'o', color=c, ms=3,
              lw=1, label=f'{r["arm"]} s{r["seed"]}')
  ax_w.set(title='DLN weight w per batch: mean ± std over sequences', xlabel='step',
           ylabel='w', ylim=(0, 1))
  ax_p.set(title='PTB valid perplexity (train-time eval, nonoverlap)', xlabel='step',
           ylabel='perplexity', yscale='log')
  for ax in (ax_w, ax_p):
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(out, dpi=80)
  print(f'wrote {out}')


if __name__ == '__main__':
  if sys.argv[1:2] == ['collect'] and len(sys.argv) == 4:
    collect(sys.argv[2], sys.argv[3])
  elif sys.argv[1:2] == ['plot'] and len(sys.argv) == 4:
    plot(sys.argv[2], sys.argv[3])
  else:
    sys.exit(__doc__)
