"""Blockwise attention tile sizes: each pass of the attention core timed apart (no projections).

  python benchmarks/attention_blocks.py --lengths 1024,2048,4096,8192 \
      --blocks 512x256,256x512,256x256,512x512,128x128 \
      --out benchmarks/results/attention_blocks_cpu.json

On (1, 12, L, 64) float32 q, k, v: `forward` is the online-softmax pass (output and row
logsumexp) with block_q query rows x block_k keys per tile; `backward` is the recomputing pass
(dq, dk, dv from the forward's output and logsumexp) with the same two numbers as its query
rows x keys. Median of --runs calls after a warm-up. blockwise_causal_attention's defaults,
512 x 256 forward and the swapped 256 x 512 backward, come from this table.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))
# pylint: disable=g-import-not-at-top,wrong-import-position
import hyena_jax  # pylint: disable=unused-import  # Applies the package's XLA:CPU defaults.

import jax

from hyena_jax.ops import attention
import timing


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--lengths', default='1024,2048,4096,8192')
  p.add_argument('--blocks', default='512x256,256x512,256x256,512x512,128x128')
  p.add_argument('--runs', type=int, default=5)
  p.add_argument('--out', default=None)
  a = p.parse_args(argv)
  lengths = [int(L) for L in a.lengths.split(',')]
  blocks = [tuple(map(int, b.split('x'))) for b in a.blocks.split(',')]
  for L in lengths:
    for bq, bk in blocks:
      if L % bq or L % bk:
        sys.exit(f'--lengths: L={L} is not a multiple of the blocks {bq}x{bk}')
  rows = []
  for L in lengths:
    q, k, v, do = (jax.random.normal(jax.random.key(i), (1, 12, L, 64)) for i in range(4))
    # pylint: disable=protected-access
    o, lse = jax.jit(lambda q, k, v: attention._flash_forward(
        q, k, v, *attention._blocks(L, 512, 256)[:2]))(q, k, v)
    for bq, bk in blocks:
      fwd = jax.jit(lambda q, k, v, bq=bq, bk=bk: attention._flash_forward(q, k, v, bq, bk))
      bwd = jax.jit(lambda *r, bq=bq, bk=bk: attention._flash_backward(*r, bq, bk))
      row = {'L': L, 'block_q': bq, 'block_k': bk,
             'forward_s': timing.median_s(fwd, q, k, v, reps=a.runs),
             'backward_s': timing.median_s(bwd, q, k, v, o, lse, do, reps=a.runs)}
      rows.append(row)
      print(f"L={L} {bq}x{bk}: forward {row['forward_s']:.4f} s, "
            f"backward {row['backward_s']:.4f} s", flush=True)
  if a.out:
    timing.write_json(a.out, {'xla_flags': os.environ.get('XLA_FLAGS', ''), 'cpu': timing.cpu(),
                              'rows': rows})
    print(f'wrote {a.out}')


if __name__ == '__main__':
  main()
