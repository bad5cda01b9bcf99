"""LM training throughput (tokens/s) per mixer at the official L2T-Hyena code's size, in one run.

  python benchmarks/lm_throughput.py --out benchmarks/results/lm_throughput_epyc.json

Shape of the official L2T-Hyena student (Fatemeh-Sohbati/L2T-Hyena, ../shared/reference/l2t.md):
d_model 256, 6 blocks with no MLP, context 64, batch 128, PTB's 10k vocabulary, tied embedding.
Every arm is one full jitted training step on random tokens (forward, backward, clipping, AdamW
update; donated state), median of --reps steps after a compile step:
  hyena            plain CE, the default channels-first Hyena
  hyena_reference  plain CE, model.hyena.impl='reference' (the before of the fast path)
  attention        plain CE, causal attention (4 D^2 projections per block, as Hyena's)
  longhorn         plain CE, Longhorn with the layer count closest in parameters
  hyena_l2t        the L2T 'paper' step: DLN-weighted loss + the memory teacher's update
With --official PATH (a Fatemeh-Sohbati/L2T-Hyena checkout, never vendored here) the same run
also times the official PyTorch code at its defaults (TrainConfig: the sizes above, vocab
10,000) in a subprocess, side by side:
  official         student forward, CE, backward, clipping, AdamW step (its model, plain)
  official_l2t     its L2TDLNTrainingSystem.step: student + DLN + memory teacher, one backward
Without it, the ratios use its figures measured earlier on this CPU (../shared/reference/
environment.md): ~2,660 tokens/s plain, ~1,420 with its DLN/teacher. Our Hyena's filter is the
implicit one (safari), theirs an explicit gated filter; at context 64 either is under 1% of a step.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))
# pylint: disable=g-import-not-at-top,wrong-import-position
import hyena_jax  # pylint: disable=unused-import  # Applies the package's XLA:CPU defaults.

import jax
import jax.numpy as jnp
from flax import nnx

from hyena_jax import config_lib, optim, steps
from hyena_jax.l2t import steps as l2t_steps
from hyena_jax.models import LM
import timing

CONFIG = os.path.join(os.path.dirname(__file__), '..', 'configs', 'l2t_ptb.py')
OFFICIAL_TOKENS_PER_S = {'plain': 2660.0, 'l2t': 1420.0}
ARMS = {  # name -> (configs/l2t_ptb.py arm, overrides)
    'hyena': ('ce', {}),
    'hyena_reference': ('ce', {'hyena.impl': 'reference'}),
    'attention': ('transformer', {}),
    'longhorn': ('longhorn', {}),
    'hyena_l2t': ('paper', {}),
}


def _config(arm: str, overrides: dict, n_layer: int):
  c = config_lib.load_config_file(CONFIG, arm)
  c.model.update(d_model=256, n_layer=n_layer, d_inner=0)
  c.train.global_batch_size = 128
  for k, v in overrides.items():
    group, name = k.split('.')
    c.model[group][name] = v
  return c


def _num_params(c) -> int:
  params = nnx.state(nnx.eval_shape(lambda: LM(c.model, rngs=nnx.Rngs(0))), nnx.Param)
  return sum(x.size for x in jax.tree.leaves(params))


def random_batch(key, B: int, L: int, V: int) -> dict:
  """A next-token batch of B random sequences of L tokens below V."""
  x = jax.random.randint(key, (B, L + 1), 0, V)
  return {'inputs': x[:, :-1], 'targets': x[:, 1:], 'acc_mask': jnp.ones((B, L))}


def train_state(c):
  """(graphdef, tx, lr schedule, fresh training state) of config c's LM and optimizer."""
  graphdef, params = nnx.split(LM(c.model, rngs=nnx.Rngs(0)), nnx.Param)
  tx, sched = optim.make(c, params)
  state = {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': tx.init(params)}
  return graphdef, tx, sched, state


def setup(c):
  """(graphdef, tx, lr schedule, training state, one random-token batch) for config c."""
  batch = random_batch(jax.random.key(0), c.train.global_batch_size, c.data.seq_len,
                       c.model.vocab_size)
  return (*train_state(c), batch)


def _run(c, reps: int) -> float:
  graphdef, tx, sched, state, batch = setup(c)
  if c.l2t.mode == 'off':
    fn = jax.jit(lambda s: steps.train_step(s, batch, graphdef=graphdef, tx=tx,
                                            lr_schedule=sched, seed=0)[0], donate_argnums=0)
  else:
    l2t = l2t_steps.L2T(c, graphdef, tx, sched)
    state['l2t'] = l2t.init(jax.random.key(1))
    fn = jax.jit(lambda s: l2t.train_step(s, batch)[0], donate_argnums=0)
  return timing.median_s(timing.chained(fn, state), reps=reps)


def _official(path: str, kind: str, reps: int) -> tuple[float, int]:
  """(median seconds per step, student parameters) of the official PyTorch code."""
  import torch
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  torch.manual_seed(0)
  sys.path.insert(0, path)
  import train_hyena_l2t as official  # pylint: disable=import-error
  cfg = official.TrainConfig(vocab_size=10_000, device='cpu')
  system = official.L2TDLNTrainingSystem(cfg, 'cpu')
  x = torch.randint(0, cfg.vocab_size, (cfg.train_batch_size, cfg.context_length))
  y = torch.randint(0, cfg.vocab_size, (cfg.train_batch_size, cfg.context_length))
  student, opt = system.student, system.student_optimizer
  ce = torch.nn.CrossEntropyLoss()

  def plain():
    opt.zero_grad()
    loss = ce(student(x).view(-1, cfg.vocab_size), y.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip_value)
    opt.step()

  step = plain if kind == 'official' else lambda: system.step(x, y, cfg.reg_strength)
  return timing.median_s(step, reps=reps), sum(p.numel() for p in student.parameters())


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--arms', default=','.join(ARMS))
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--official', default=None, help='a Fatemeh-Sohbati/L2T-Hyena checkout')
  p.add_argument('--out', default=None)
  p.add_argument('--one', default=None, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.one:
    print('@@SECONDS %r %d' % _official(a.official, a.one, a.reps), flush=True)
    return
  official = dict(OFFICIAL_TOKENS_PER_S)
  rows = []
  if a.official:
    for kind in ('official', 'official_l2t'):
      res = subprocess.run([sys.executable, os.path.abspath(__file__), f'--one={kind}',
                            f'--official={a.official}', f'--reps={a.reps}'],
                           capture_output=True, text=True, check=True)
      _, sec, n_params = [l for l in res.stdout.splitlines() if l.startswith('@@SECONDS')][-1].split()
      sec = float(sec)
      official['plain' if kind == 'official' else 'l2t'] = 128 * 64 / sec
      rows.append({'arm': kind, 'n_layer': 6, 'params': int(n_params), 'step_s': sec,
                   'tokens_per_s': 128 * 64 / sec, 'official_tokens_per_s': 128 * 64 / sec,
                   'x_official': 1.0})
      print(f'[{kind}] {sec:.3f} s/step, {128 * 64 / sec:,.0f} tokens/s', flush=True)
  hyena_params = _num_params(_config('ce', {}, 6))
  for name in a.arms.split(','):
    arm, overrides = ARMS[name]
    layers = 6
    if name == 'longhorn':  # The layer count whose parameter count is closest to Hyena's.
      layers = min(range(1, 13), key=lambda n: abs(_num_params(_config(arm, {}, n)) -
                                                   hyena_params))
    c = _config(arm, overrides, layers)
    sec = _run(c, a.reps)
    tokens = c.train.global_batch_size * c.data.seq_len
    kind = 'l2t' if c.l2t.mode != 'off' else 'plain'
    row = {'arm': name, 'n_layer': layers, 'params': _num_params(c), 'step_s': sec,
           'tokens_per_s': tokens / sec, 'official_tokens_per_s': official[kind],
           'x_official': tokens / sec / official[kind]}
    rows.append(row)
    print(f"[{name}] {row['params']:,} params, {sec:.3f} s/step, {row['tokens_per_s']:,.0f} "
          f"tokens/s = {row['x_official']:.2f}x the official {kind} figure", flush=True)
  print('\n| arm | layers | params | s/step | tokens/s | vs official |')
  print('|---|---|---|---|---|---|')
  for r in rows:
    params = f"{r['params']:,}" if r['params'] else '-'
    print(f"| {r['arm']} | {r['n_layer']} | {params} | {r['step_s']:.3f} | "
          f"{r['tokens_per_s']:,.0f} | {r['x_official']:.2f}x |")
  if a.out:
    env = {'device': jax.devices()[0].device_kind, 'cpu': timing.cpu(),
           'cpu_threads': len(os.sched_getaffinity(0)),
           'jax': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
           'batch': 128, 'seq_len': 64, 'd_model': 256, 'vocab': 10_000,
           'official_measured_here': bool(a.official)}
    timing.write_json(a.out, {'env': env, 'rows': rows})
    print(f'wrote {a.out}')


if __name__ == '__main__':
  main()
