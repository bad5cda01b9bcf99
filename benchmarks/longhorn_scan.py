"""Longhorn scan: forward+backward time and temporary memory of every implementation, side by
side in one run, and the mixer's decode time per token at two context lengths.

  python benchmarks/longhorn_scan.py [--out benchmarks/results/longhorn_scan_cpu.json]

Goals (the Longhorn issue): the default scan >= 4x faster and >= 20x less temporary memory
than the full associative scan for forward+backward on CPU; decode time per token flat in the
context (ratio 8K / 1K <= 1.2). Temporary memory is XLA's own count for the compiled
gradient (`memory_analysis().temp_size_in_bytes`), not a process RSS reading.
"""

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hyena_jax.models.longhorn import LonghornMixer
from hyena_jax.ops import longhorn as lh
import timing  # benchmarks/, the script's own directory

SHAPES = [(2, 1024, 512, 16), (2, 4096, 256, 16)]  # (B, L, D, N)


def scan_rows(reps: int, chunk: int):
  rows = []
  for B, L, D, N in SHAPES:
    ks = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(ks[0], (B, L, D))
    k = jax.random.normal(ks[1], (B, L, N)) / np.sqrt(N)
    q = jax.random.normal(ks[2], (B, L, N))
    r = jax.random.normal(ks[3], (B, L, D))
    for impl in lh.Scan:

      def loss(x, k, q, r, impl=impl):
        y, S = lh.scan(x, k, q, lh.step_size(r, k), impl=impl, chunk=chunk)
        return jnp.sum(y * y) + jnp.sum(S)

      fwd = jax.jit(lambda *a, impl=impl: lh.scan(
          a[0], a[1], a[2], lh.step_size(a[3], a[1]), impl=impl, chunk=chunk)[0])
      grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
      mem = grad.lower(x, k, q, r).compile().memory_analysis()
      row = {'B': B, 'L': L, 'D': D, 'N': N, 'impl': impl.value, 'chunk': chunk,
             'fwd_s': timing.median_s(fwd, x, k, q, r, reps=reps),
             'fwd_bwd_s': timing.median_s(grad, x, k, q, r, reps=reps),
             'temp_fwd_bwd_mib': mem.temp_size_in_bytes / 2**20}
      rows.append(row)
      print(json.dumps(row), flush=True)
  return rows


def decode_rows(reps: int, d_model: int = 512):
  """Per-token mixer decode after a prefill of `ctx` tokens: O(1) state, so flat in ctx."""
  cfg = ml_collections.ConfigDict({'dtype': 'float32', 'longhorn': {
      'd_state': 16, 'expand': 2, 'd_conv': 4, 'dt_rank': 0, 'scan': 'auto', 'chunk': 64}})
  mixer = LonghornMixer(d_model, cfg, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(mixer)

  @jax.jit
  def step(params, x_Bx1xD, state):
    return nnx.merge(graphdef, params)(x_Bx1xD, state)

  prefill = jax.jit(lambda p, x, s: nnx.merge(graphdef, p)(x, s))
  states = {}
  for ctx in (1024, 8192):
    x = jax.random.normal(jax.random.PRNGKey(ctx), (1, ctx, d_model))
    _, states[ctx] = prefill(params, x, mixer.init_state(1))
  tok = jnp.ones((1, 1, d_model), jnp.float32)
  jax.block_until_ready(step(params, tok, states[1024]))

  def per_token(state, n=100):
    # A real decode loop: each step consumes the previous step's state.
    t0 = time.perf_counter()
    for _ in range(n):
      _, state = step(params, tok, state)
    jax.block_until_ready(state)
    return (time.perf_counter() - t0) / n

  # Contexts interleaved round by round, so machine noise hits both alike.
  times = {ctx: [] for ctx in states}
  for _ in range(reps * 2):
    for ctx, state in states.items():
      times[ctx].append(per_token(state))
  rows = [{'context': ctx, 'd_model': d_model, 'decode_s_per_token': float(np.median(ts))}
          for ctx, ts in times.items()]
  for r in rows:
    print(json.dumps(r), flush=True)
  return rows


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--out', default='')
  ap.add_argument('--reps', type=int, default=5)
  ap.add_argument('--chunk', type=int, default=64)
  args = ap.parse_args()
  rows = scan_rows(args.reps, args.chunk)
  decode = decode_rows(args.reps)
  summary = []
  for B, L, D, N in SHAPES:
    by = {r['impl']: r for r in rows if (r['B'], r['L'], r['D'], r['N']) == (B, L, D, N)}
    base, default = by['associative'], by[lh.resolve_scan('auto').value]
    summary.append({
        'shape': f'B{B} L{L} D{D} N{N}', 'default': default['impl'],
        'speedup_vs_associative': base['fwd_bwd_s'] / default['fwd_bwd_s'],
        'temp_memory_ratio_vs_associative': base['temp_fwd_bwd_mib'] / default['temp_fwd_bwd_mib']})
  summary.append({'decode_ratio_8k_over_1k':
                  decode[1]['decode_s_per_token'] / decode[0]['decode_s_per_token']})
  for s in summary:
    print(json.dumps(s))
  if args.out:
    machine = (f'{platform.machine()} CPU x{jax.local_device_count()} device(s), '
               f'jax {jax.__version__}, {jax.default_backend()}')
    timing.write_json(args.out, {'command': 'python benchmarks/longhorn_scan.py --out ' + args.out,
                                 'machine': machine, 'scan': rows, 'decode': decode,
                                 'summary': summary})


if __name__ == '__main__':
  main()
