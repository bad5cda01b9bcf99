"""The XLA:CPU facts the speed work rests on, measured in one run (seconds, median of 10).

  python benchmarks/xla_cpu_micro.py --out benchmarks/results/xla_cpu_micro.json

  transpose        a plain 8192 x 2304 float32 transpose, vs the same after a slice (fused)
  fft              a 768 x 2L real FFT (L = 1K, 8K) in XLA vs torch.fft (same threads)
  gemm             the Hyena in-projection GEMM (8192 x 768 @ 768 x 2304) in float32 vs bfloat16
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
# pylint: disable=g-import-not-at-top,wrong-import-position
import hyena_jax  # pylint: disable=unused-import  # Applies the package's XLA:CPU defaults.

import jax
import jax.numpy as jnp


def _median(fn, *args, n: int = 10) -> float:
  jax.block_until_ready(fn(*args))
  ts = []
  for _ in range(n):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--out', default=None)
  a = p.parse_args(argv)
  key = jax.random.key(0)
  res = {}
  x = jax.random.normal(key, (8194, 2304))
  res['transpose_plain_s'] = _median(jax.jit(lambda x: x.T), x[:8192])
  res['transpose_after_slice_s'] = _median(jax.jit(lambda x: x[2:].T), x)
  import torch
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  for L in (1024, 8192):
    u = jax.random.normal(key, (768, L))
    res[f'fft_xla_L{L}_s'] = _median(jax.jit(lambda u, L=L: jnp.fft.rfft(u, n=2 * L)), u)
    ut = torch.randn(768, L)
    ts = []
    for _ in range(11):
      t0 = time.perf_counter()
      torch.fft.rfft(ut, n=2 * L)
      ts.append(time.perf_counter() - t0)
    res[f'fft_torch_L{L}_s'] = statistics.median(ts[1:])
  u, w = jax.random.normal(key, (8192, 768)), jax.random.normal(key, (768, 2304))
  flops = 2 * 8192 * 768 * 2304
  for dt in ('float32', 'bfloat16'):
    sec = _median(jax.jit(lambda u, w: u @ w), u.astype(dt), w.astype(dt))
    res[f'gemm_{dt}_gflops'] = flops / sec / 1e9
  for k, v in res.items():
    print(f'{k}: {v:.4f}')
  if a.out:
    with open(a.out, 'w') as f:
      json.dump({'jax': jax.__version__, 'torch': torch.__version__,
                 'xla_flags': os.environ.get('XLA_FLAGS', ''), 'results': res}, f, indent=1)
    print(f'wrote {a.out}')


if __name__ == '__main__':
  main()
