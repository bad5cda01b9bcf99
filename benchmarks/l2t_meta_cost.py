"""Cost of the L2T meta step against a plain step, and amortised throughput, in one run.

  python benchmarks/l2t_meta_cost.py [--out benchmarks/results/l2t_meta_cost_cpu.json]

The student is the L2T PTB student (configs/l2t_ptb.py: Hyena, d_model 256, 4 layers, context
64, vocab 10k, batch 32) on random tokens. Measured side by side: a plain CE step, the
DLN-weighted step (what meta mode runs between meta steps), and meta steps with K = 1, 5, 15
unrolled student steps (Adam teacher) and K = 5 with the LSTM teacher (two unrolls). A meta
step also *is* K student steps (the unrolled student is committed), so the table gives its
cost per meta step and per student step. Amortised: wall time of 20 student steps of the
real schedule (a meta step every M steps) over 20 plain steps.
Goals (the L2T issue): K = 1 every step <= 2.5x a plain step; M = 10 amortised <= 1.25x.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))
# pylint: disable=g-import-not-at-top,wrong-import-position
import hyena_jax  # pylint: disable=unused-import  # Applies the package's XLA:CPU defaults.

import jax
import jax.numpy as jnp

from hyena_jax import config_lib, steps
from hyena_jax.l2t import steps as l2t_steps
import lm_throughput
import timing

CONFIG = os.path.join(os.path.dirname(__file__), '..', 'configs', 'l2t_ptb.py')


def _time(fn, state, reps):
  """Median seconds of state = fn(state) (state donated) over reps calls after one compile call."""
  return timing.median_s(timing.chained(fn, state), reps=reps)


def _build(arm: str, K: int = 1, every: int = 1):
  c = config_lib.load_config_file(CONFIG, arm)
  if c.l2t.mode == 'meta':
    c.l2t.meta.update(unroll=K, every=max(every, K))
  graphdef, tx, sched, state = lm_throughput.train_state(c)
  l2t = None
  if c.l2t.mode != 'off':
    l2t = l2t_steps.L2T(c, graphdef, tx, sched)
    state['l2t'] = l2t.init(jax.random.PRNGKey(1))
  return c, graphdef, tx, sched, l2t, state


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results',
                                               'l2t_meta_cost_cpu.json'))
  p.add_argument('--reps', type=int, default=5)
  a = p.parse_args(argv)
  c, graphdef, tx, sched, _, state = _build('ce')
  B, L, V = c.train.global_batch_size, c.data.seq_len, c.model.vocab_size
  keys = jax.random.split(jax.random.PRNGKey(0), 16)
  batch = lm_throughput.random_batch(keys[0], B, L, V)
  plain = jax.jit(lambda s: steps.train_step(s, batch, graphdef=graphdef, tx=tx,
                                             lr_schedule=sched, seed=0)[0], donate_argnums=0)
  t_plain = _time(plain, state, 2 * a.reps)
  rows = [{'what': 'plain CE step', 'seconds': t_plain, 'x_plain': 1.0}]
  print(f'plain CE step {t_plain:.3f} s', flush=True)

  _, _, _, _, l2t, state = _build('meta1')
  weighted = jax.jit(lambda s: l2t.train_step(s, batch)[0], donate_argnums=0)
  t_w = _time(weighted, state, 2 * a.reps)
  rows.append({'what': 'DLN-weighted step (meta mode, between meta steps)', 'seconds': t_w,
               'x_plain': t_w / t_plain})
  print(f'weighted step {t_w:.3f} s ({t_w / t_plain:.2f}x)', flush=True)

  meta_t = {}
  for arm, K in (('meta1', 1), ('meta1', 5), ('meta1', 15), ('meta5lstm', 5)):
    _, _, _, _, l2t, state = _build(arm, K)
    bs = jax.tree.map(lambda *x: jnp.stack(x),
                      *[lm_throughput.random_batch(keys[1 + k], B, L, V) for k in range(K)])
    val = lm_throughput.random_batch(keys[-1], B, L, V)
    fn = jax.jit(lambda s, l2t=l2t, bs=bs, val=val: l2t.meta_step(s, bs, val)[0],
                 donate_argnums=0)
    mem = fn.lower(state).compile().memory_analysis()
    t = _time(fn, state, max(2, a.reps // (1 if K == 1 else 2)))
    teacher = 'lstm' if arm == 'meta5lstm' else 'adam'
    meta_t[(K, teacher)] = t
    rows.append({'what': f'meta step K={K}, {teacher} teacher', 'K': K, 'teacher': teacher,
                 'seconds': t, 'x_plain': t / t_plain, 'x_plain_per_student_step': t / K / t_plain,
                 'temp_gb': round(mem.temp_size_in_bytes / 1e9, 3) if mem else None})
    print(f'meta K={K} {teacher}: {t:.3f} s = {t / t_plain:.2f}x plain '
          f'({t / K / t_plain:.2f}x per student step)', flush=True)

  amortised = []
  for M in (1, 10):
    _, _, _, _, l2t, state = _build('meta1', 1, M)
    val = lm_throughput.random_batch(keys[-1], B, L, V)
    bs1 = jax.tree.map(lambda x: x[None], batch)
    meta = jax.jit(lambda s, l2t=l2t: l2t.meta_step(s, bs1, val)[0], donate_argnums=0)
    step = jax.jit(lambda s, l2t=l2t: l2t.train_step(s, batch)[0], donate_argnums=0)
    state = jax.block_until_ready(step(meta(state)))  # Compile both.
    t0 = time.perf_counter()
    for i in range(20):
      state = meta(state) if i % M == 0 else step(state)
    jax.block_until_ready(state)
    per_step = (time.perf_counter() - t0) / 20
    amortised.append({'M': M, 'K': 1, 'seconds_per_student_step': per_step,
                      'x_plain': per_step / t_plain,
                      'tokens_per_s': B * L / per_step, 'plain_tokens_per_s': B * L / t_plain})
    print(f'amortised M={M}: {per_step:.3f} s/step = {per_step / t_plain:.2f}x plain, '
          f'{B * L / per_step:,.0f} tok/s (plain {B * L / t_plain:,.0f})', flush=True)
  out = {'device': jax.devices()[0].device_kind, 'threads': os.cpu_count(),
         'shape': {'batch': B, 'seq_len': L, 'vocab': V, 'd_model': c.model.d_model,
                   'n_layer': c.model.n_layer},
         'steps': rows, 'amortised': amortised,
         'goals': {'K1_every_step_x_plain_max': 2.5, 'M10_amortised_x_plain_max': 1.25}}
  os.makedirs(os.path.dirname(a.out), exist_ok=True)
  with open(a.out, 'w') as f:
    json.dump(out, f, indent=1)
  print(f'wrote {a.out}')


if __name__ == '__main__':
  main()
