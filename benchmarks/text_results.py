"""Collect a text run into a small committed JSON, and plot training/validation curves.

  python benchmarks/text_results.py collect WORKDIR OUT.json [--tokens_per_epoch N]
  python benchmarks/text_results.py plot OUT.png RESULT.json [RESULT.json ...]

`collect` keeps the train loss every 10 steps, every train-time eval, the final report and
the latest hyena_jax.evaluate report of WORKDIR (WORKDIR/eval/step_N.json).
"""

import glob
import json
import math
import os
import sys


def collect(workdir: str, out: str) -> None:
  rows = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl')) if l.strip()]
  train = [[r['step'], round(r['loss'], 5)] for r in rows if r['split'] == 'train']
  valid = [[r['step'], round(r['loss'], 5), round(r.get('perplexity', math.exp(r['loss'])), 3)]
           for r in rows if r['split'] == 'eval']
  evals = sorted(glob.glob(os.path.join(workdir, 'eval', 'step_*.json')),
                 key=lambda p: int(p.rsplit('_', 1)[1][:-5]))
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  with open(os.path.join(workdir, 'final_report.json')) as f:
    report = json.load(f)
  result = {
      'config': {k: config[k] for k in ('data', 'model', 'optim', 'train', 'eval') if k in config},
      'final_report': report,
      'evaluate': json.load(open(evals[-1])) if evals else None,
      'train_loss_every_10_steps': train[::max(1, len(train) // 400)],
      'train_time_eval': {'columns': ['step', 'loss', 'perplexity'], 'rows': valid},
  }
  with open(out, 'w') as f:
    json.dump(result, f, indent=1)
  print(f'wrote {out}')


def plot(out: str, results: list[str]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.2), squeeze=False)
  for ax, path in zip(axes[0], results):
    r = json.load(open(path))
    name = r['config']['data']['name']
    tr = r['train_loss_every_10_steps']
    ax.plot([s for s, _ in tr], [math.exp(l) for _, l in tr], lw=0.8, label='train (batch)')
    ev = r['train_time_eval']['rows']
    ax.plot([s for s, _, _ in ev], [p for _, _, p in ev], 'o-', ms=3, label='valid')
    ax.set_yscale('log')
    ax.set_title(f'{name}: {r["final_report"]["num_params"] / 1e6:.1f}M-param Hyena', fontsize=9)
    ax.set_xlabel('step')
    ax.set_ylabel('perplexity')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out, dpi=80)
  print(f'wrote {out}')


if __name__ == '__main__':
  if sys.argv[1:2] == ['collect'] and len(sys.argv) == 4:
    collect(sys.argv[2], sys.argv[3])
  elif sys.argv[1:2] == ['plot'] and len(sys.argv) >= 4:
    plot(sys.argv[2], sys.argv[3:])
  else:
    sys.exit(__doc__)
