"""Perplexity of a checkpoint on the text splits: python -m hyena_jax.evaluate --config=... --workdir=...

Evaluates the latest checkpoint (or --step) on eval.splits in eval.modes (see
hyena_jax/eval/perplexity.py), prints a table and writes WORKDIR/eval/step_N.json (merging
with an earlier evaluation of the same step).
Word-level corpora report word perplexity; bpe and byte tokenizers add bits per byte.
"""

import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging

from hyena_jax import main as cli

flags.DEFINE_integer('step', None, 'Checkpoint step to evaluate (default: the latest).')
FLAGS = flags.FLAGS


def evaluate_checkpoint(c, workdir: str, step: int | None = None, log=print) -> dict:
  """Restores `step` (default latest) of `workdir` and returns {split: {mode: metrics}}."""
  from hyena_jax import config_lib, sharding  # pylint: disable=g-import-not-at-top
  from hyena_jax.eval import perplexity, restore  # pylint: disable=g-import-not-at-top

  def text_only(trainer):
    if not getattr(trainer.dataset, 'reports_perplexity', False):
      raise config_lib.ConfigError(f'data.name={c.data.name!r} is not a text corpus; '
                                   'hyena_jax.evaluate reports perplexity on text splits')

  trainer, state, step = restore.restore_checkpoint(c, workdir, step, check=text_only)
  ds = trainer.dataset
  params, e, L = state['params'], c.eval, c.data.seq_len
  batch_size = e.batch_size or c.train.global_batch_size
  token_bytes = ds.tokenizer.token_bytes()
  results = {}
  for split in filter(None, e.splits.split(',')):
    stream = np.asarray(ds.streams[split])
    results[split] = {}
    for mode in filter(None, e.modes.split(',')):
      t0 = time.time()
      if mode == 'l2t':
        batches = perplexity.l2t_batches(stream, e.l2t_window, batch_size, e.l2t_every)
      else:
        stride = L if mode == 'nonoverlap' else (e.stride or max(L // 4, 1))
        batches = perplexity.window_batches(stream, L, stride, batch_size)
      nll, count = 0.0, 0.0
      for b in batches:
        out = trainer.eval_step(params, ds.global_batch(b))
        nll += float(sharding.to_host(out['loss_sum']))
        count += float(sharding.to_host(out['count']))
      n_bytes = None
      if mode != 'l2t' and c.data.tokenizer != 'word':
        n_bytes = float(token_bytes[stream[1:].astype(np.int64)].sum())
      r = perplexity.summarize(nll, count, n_bytes)
      if mode == 'sliding':
        r['stride'] = stride
      if mode == 'l2t':
        r['window_every'] = e.l2t_every
      r['seconds'] = round(time.time() - t0, 1)
      results[split][mode] = r
      log(f'{split:5s} {mode:10s} perplexity {r["perplexity"]:10.3f}'
          + (f'  bits/byte {r["bits_per_byte"]:.4f}' if 'bits_per_byte' in r else '')
          + f'  ({int(count):,} scored tokens, {r["seconds"]} s)')
  report = {'step': int(step), 'dataset': c.data.name, 'tokenizer': ds.signature,
            'seq_len': L, 'num_params': trainer.num_params, 'results': results,
            'note': ('word-level: perplexity is word perplexity' if c.data.tokenizer == 'word'
                     else 'perplexity is per token; bits_per_byte uses UTF-8 bytes')}
  if 'l2t' in e.modes:
    report['l2t_note'] = ('l2t = the L2T-Hyena paper metric (every 64-token window, stride 1, all '
                          'positions): not comparable to standard perplexity')
  if jax.process_index() == 0:
    out_dir = os.path.join(workdir, 'eval')
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f'step_{step}.json')
    if os.path.exists(path):  # Later runs (other splits or modes) add to, not replace, results.
      with open(path) as f:
        old = json.load(f)
      for split, modes in old.get('results', {}).items():
        report['results'][split] = modes | report['results'].get(split, {})
      report = old | report | ({'l2t_note': old['l2t_note']} if 'l2t_note' in old else {})
    with open(path + '.tmp', 'w') as f:
      json.dump(report, f, indent=2)
    os.replace(path + '.tmp', path)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = cli.load_config_or_exit()
  from hyena_jax import config_lib, sharding  # pylint: disable=g-import-not-at-top
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  sharding.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id, auto=FLAGS.distributed)
  try:
    evaluate_checkpoint(config, FLAGS.workdir, FLAGS.step,
                        log=lambda m: print(m, flush=True) if jax.process_index() == 0 else None)
  except config_lib.ConfigError as e:
    print(f'hyena_jax: error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
