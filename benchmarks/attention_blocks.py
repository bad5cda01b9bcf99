"""Blockwise attention tile sizes: fwd+bwd of the attention core alone (no projections).

  python benchmarks/attention_blocks.py --lengths 1024,2048,4096,8192 \
      --blocks 128x128,256x256,512x256 --out benchmarks/results/attention_blocks_cpu.json

ops.attention.blockwise_causal_attention_heads_major on (1, 12, L, 64) float32 q, k, v;
gradients of q, k and v of sum(o * w); median of --runs calls after a warm-up. The defaults of
block_q x block_k in hyena_jax/ops/attention.py come from this table.
"""

import argparse
import functools
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

from hyena_jax import ops


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--lengths', default='1024,2048,4096,8192')
  p.add_argument('--blocks', default='128x128,256x256,512x256')
  p.add_argument('--runs', type=int, default=3)
  p.add_argument('--out', default=None)
  a = p.parse_args(argv)
  rows = []
  for L in map(int, a.lengths.split(',')):
    q, k, v, w = (jax.random.normal(jax.random.key(i), (1, 12, L, 64)) for i in range(4))
    for blocks in a.blocks.split(','):
      bq, bk = map(int, blocks.split('x'))
      attn = functools.partial(ops.attention.blockwise_causal_attention_heads_major,
                               block_q=bq, block_k=bk)
      grad = jax.jit(jax.grad(lambda q, k, v, w: jnp.sum(attn(q, k, v) * w), argnums=(0, 1, 2)))
      jax.block_until_ready(grad(q, k, v, w))
      ts = []
      for _ in range(a.runs):
        t0 = time.perf_counter()
        jax.block_until_ready(grad(q, k, v, w))
        ts.append(time.perf_counter() - t0)
      rows.append({'L': L, 'block_q': bq, 'block_k': bk, 'median_s': statistics.median(ts)})
      print(f'L={L} {blocks}: {statistics.median(ts):.3f} s', flush=True)
  if a.out:
    with open(a.out, 'w') as f:
      json.dump({'xla_flags': os.environ.get('XLA_FLAGS', ''), 'rows': rows}, f, indent=1)
    print(f'wrote {a.out}')


if __name__ == '__main__':
  main()
