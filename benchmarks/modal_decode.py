"""Modal (Laughing Hyena) distillation of trained Hyena LMs: filter error and perplexity change.

  python benchmarks/modal_decode.py --workdirs RUN1,RUN2 --orders 4,8,16,32 \
      --out benchmarks/results/modal_decode.json

For each trained workdir (any Hyena text run of this codebase: its config.json and latest
checkpoint) and each order N (complex modes per channel), every layer's filters are fitted
(hyena_jax.generate.modal.to_modal) and the valid split is scored (nonoverlap windows of the
run's seq_len, the first --max_tokens targets) by the original and by the modal model. The
modal model's forward uses the modal filters, and its decode recurrence equals that forward
(tests/generate_test.py), so the perplexity change is what O(1) decoding costs.
"""

import argparse
import os
import sys
import time

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
from flax import nnx
import timing  # benchmarks/, the script's own directory

from hyena_jax import config_lib
from hyena_jax.distill import steps as distill_steps
from hyena_jax.eval import perplexity, restore
from hyena_jax.generate import modal


def _merge(base, saved) -> None:
  """A workdir's config.json over today's defaults (older runs lack newer fields)."""
  for k, v in saved.items():
    if isinstance(v, dict) and k in base and hasattr(base[k], 'keys'):
      _merge(base[k], v)
    else:
      base[k] = v


def nll(model, stream, L: int, batch_size: int) -> float:
  graphdef, state = nnx.split(model)

  @jax.jit
  def loss_sum(state, b):
    logits = nnx.merge(graphdef, state)(b['inputs'])
    logp = jax.nn.log_softmax(logits, -1)
    tok = jnp.take_along_axis(logp, b['targets'][..., None], -1)[..., 0]
    return -(tok * b['acc_mask']).sum(), b['acc_mask'].sum()

  total, count = 0.0, 0.0
  for b in perplexity.window_batches(stream, L, L, batch_size):
    s, n = loss_sum(state, b)
    total, count = total + float(s), count + float(n)
  return total / count


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdirs', required=True)
  p.add_argument('--orders', default='4,8,16,32')
  p.add_argument('--max_tokens', type=int, default=65_536)
  p.add_argument('--batch_size', type=int, default=32)
  p.add_argument('--out', default=None)
  args = p.parse_args()
  rows = []
  for wd in args.workdirs.split(','):
    c = config_lib.base_config()
    _merge(c, distill_steps.run_config(wd).to_dict())
    trainer, state, step = restore.restore_checkpoint(c, wd)
    model = nnx.merge(trainer.graphdef, state['params'])
    L = c.data.seq_len
    stream = np.asarray(trainer.dataset.streams['valid'])[:args.max_tokens + 1]
    base = nll(model, stream, L, args.batch_size)
    print(f'{wd} (step {step}, {c.data.name}, L={L}): valid ppl {np.exp(base):.3f}', flush=True)
    for order in [int(o) for o in args.orders.split(',')]:
      t0 = time.time()
      m, report = modal.to_modal(model, order)
      fit_s = time.time() - t0
      got = nll(m, stream, L, args.batch_size)
      row = {'workdir': os.path.basename(os.path.normpath(wd)), 'dataset': c.data.name,
             'step': step, 'seq_len': L, 'order': order, 'fit_seconds': round(fit_s, 1),
             'max_rel_err': max(r['max_rel_err'] for r in report),
             'mean_rel_err': float(np.mean([r['mean_rel_err'] for r in report])),
             'valid_ppl': float(np.exp(base)), 'modal_valid_ppl': float(np.exp(got)),
             'scored_tokens': int(min(len(stream) - 1, args.max_tokens))}
      rows.append(row)
      print(f'  order {order:3d}: filter rel. L2 error max {row["max_rel_err"]:.2e} mean '
            f'{row["mean_rel_err"]:.2e} | valid ppl {row["modal_valid_ppl"]:.3f} '
            f'({100 * (row["modal_valid_ppl"] / row["valid_ppl"] - 1):+.3f}%) | fit {fit_s:.1f} s',
            flush=True)
  if args.out:
    timing.write_json(args.out, {'args': vars(args), 'rows': rows})


if __name__ == '__main__':
  main()
