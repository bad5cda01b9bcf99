"""Where a step's time goes: per-HLO-op device time from a jax.profiler trace, top ops first.

  pip install xprof   # reads the trace (the `profile` extra of setup.py)
  python benchmarks/profile_step.py --what hyena --L 8192 --impl reference
  python benchmarks/profile_step.py --what lm    # one LM training step, the L2T-Hyena size
      [--out benchmarks/results/profile_NAME.json]

--what hyena / attention: the Hyena operator's / the blockwise attention mixer's fwd+bwd (B=1,
D=768, 12 heads, float32, gradients of every parameter and the input). --what lm: a full training step of benchmarks/lm_throughput.py's 'hyena' arm
(d_model 256, 6 blocks, context 64, batch 128). --impl reference | channels_first: the Hyena path.
Each row is one compiled HLO op (a fusion, a dot, an FFT) with its mean time per step over
--reps traced steps, its share of the summed op time, its output shape, and the JAX operation
it came from (its op_name metadata: jvp(...) is the forward, transpose(jvp(...)) the backward).
"""

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))
# pylint: disable=g-import-not-at-top,wrong-import-position
import hyena_jax  # pylint: disable=unused-import  # Applies the package's XLA:CPU defaults.

import jax
import jax.numpy as jnp
from flax import nnx
import timing  # benchmarks/, the script's own directory


def op_times(fn, args, reps: int) -> tuple[float, list[dict]]:
  """(summed op ms per step, rows) for a jitted fn, from a trace of `reps` calls."""
  try:
    from xprof.convert import raw_to_tool_data
  except ImportError as e:
    raise SystemExit('benchmarks/profile_step.py needs xprof: pip install xprof') from e
  for _ in range(2):
    jax.block_until_ready(fn(*args))
  logdir = tempfile.mkdtemp()
  with jax.profiler.trace(logdir):
    for _ in range(reps):
      jax.block_until_ready(fn(*args))
  paths = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True)
  data, _ = raw_to_tool_data.xspace_to_tool_data(paths, 'trace_viewer@', {})
  events = json.loads(data)['traceEvents']
  meta = {}
  for line in fn.lower(*args).compile().as_text().splitlines():
    # Ops inside while-loop bodies (blockwise attention's tiles) often carry no op_name.
    m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ', line)
    if m:
      name = re.search(r'op_name="([^"]*)"', line)
      meta[m.group(1)] = (m.group(2), name.group(1) if name else '(in a loop body; no op_name)')
  ms = collections.defaultdict(float)
  for e in events:
    if e.get('ph') == 'X' and e.get('name') in meta:
      ms[e['name']] += e.get('dur', 0) / reps / 1e3
  total = sum(ms.values())
  rows = [{'op': k, 'ms': v, 'share': v / total, 'shape': meta[k][0], 'from': meta[k][1]}
          for k, v in sorted(ms.items(), key=lambda kv: -kv[1])]
  return total, rows


def _mixer_grad(mod, L: int):
  """Jitted gradient of sum((mixer(u) * w)**2) / 2 w.r.t. the parameters and u, with its
  arguments (speed_vs_torch.py's loss: it needs the mixer's output, so no forward op is dropped)."""
  graphdef, params, rest = nnx.split(mod, nnx.Param, ...)
  u = jax.random.normal(jax.random.key(1), (1, L, 768))
  w = jax.random.normal(jax.random.key(2), (1, L, 768))
  fn = jax.jit(jax.grad(lambda p, u, w: jnp.sum((nnx.merge(graphdef, p, rest)(u) * w)**2) / 2,
                        argnums=(0, 1)))
  return fn, (params, u, w)


def _mixer(what: str, L: int, impl: str):
  from hyena_jax import config_lib
  from hyena_jax.models import CausalSelfAttention, HyenaOperator
  c = config_lib.base_config().model
  c.update(l_max=L, d_model=768, dtype='float32')
  c.hyena.impl = impl
  c.attention.update(num_heads=12, impl='blockwise')
  mixer = HyenaOperator if what == 'hyena' else CausalSelfAttention
  return _mixer_grad(mixer(768, c, rngs=nnx.Rngs(0)), L)


def _lm(impl: str):
  import lm_throughput
  from hyena_jax import steps
  c = lm_throughput._config('ce', {'hyena.impl': impl}, 6)  # pylint: disable=protected-access
  graphdef, tx, sched, state, batch = lm_throughput.setup(c)
  fn = jax.jit(lambda s, b: steps.train_step(s, b, graphdef=graphdef, tx=tx, lr_schedule=sched,
                                             seed=0)[0])
  return fn, (state, batch)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--what', choices=('hyena', 'attention', 'lm'), default='hyena')
  p.add_argument('--L', type=int, default=8192)
  p.add_argument('--impl', default='channels_first')
  p.add_argument('--reps', type=int, default=3)
  p.add_argument('--top', type=int, default=15)
  p.add_argument('--out', default=None)
  a = p.parse_args(argv)
  fn, args = _lm(a.impl) if a.what == 'lm' else _mixer(a.what, a.L, a.impl)
  total, rows = op_times(fn, args, a.reps)
  # Shares by kind of op over all rows: FFTs, GEMMs (XLA's ynn fusions and dots), the rest.
  # (Ops inside a while loop, e.g. the blockwise attention's tiles, count under 'while'.)
  kind = lambda r: ('fft' if r['op'].startswith('fft') else
                    'gemm' if r['op'].startswith(('ynn_fusion', 'dot')) else
                    'while' if r['op'].startswith('while') else 'other')
  by_kind = collections.defaultdict(float)
  for r in rows:
    by_kind[kind(r)] += r['share']
  print('shares: ' + ', '.join(f'{k} {100 * v:.1f}%' for k, v in sorted(by_kind.items())))
  print(f'{a.what} {a.impl if a.what != "attention" else ""} L={a.L if a.what != "lm" else 64}: '
        f'summed op time {total:.1f} ms per step')
  for r in rows[:a.top]:
    print(f"{r['ms']:8.1f} ms {100 * r['share']:5.1f}%  {r['op'][:26]:26s} {r['shape'][:26]:26s} "
          f"{r['from'][:80]}")
  if a.out:
    timing.write_json(a.out, {'args': vars(a), 'total_ms': total, 'share_by_kind': by_kind,
                              'rows': rows[:40]})
    print(f'wrote {a.out}')


if __name__ == '__main__':
  main()
