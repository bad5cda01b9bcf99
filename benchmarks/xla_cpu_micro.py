"""The XLA:CPU facts the speed work rests on, measured in one run (seconds, median of 10).

Each figure is the median over --rounds passes through the whole list (every pass keeps its
own values in the log's `rounds`): this machine's speed drifts over minutes, so one pass can
even reverse a comparison.

  python benchmarks/xla_cpu_micro.py --out benchmarks/results/xla_cpu_micro_epyc.json

  transpose        a plain 8192 x 2304 float32 transpose, vs the same after a slice (fused)
  fft              a 768 x 2L real FFT (L = 1K, 8K) in XLA vs torch.fft (same threads); at 8K
                   also XLA's FFT of an input already padded to 2L, and the pad alone (the
                   gate's product written out to 2L, as the Hyena fast path's fusion does)
  gemm             the Hyena in-projection GEMM (8192 x 768 @ 768 x 2304) in float32 vs bfloat16,
                   and torch's float32 GEMM of the same shape
  attention tiles  what bounds the blockwise attention (ops/attention.py): one 512 x 256 tile of
                   12 heads of 64 -- the q k^T and p v products in XLA vs torch.matmul (GFLOP/s),
                   exp of the tile in XLA vs torch, its row max and sum by XLA's reduce and
                   the max by the fold onto 32 lanes ops.attention uses -- and the attention core alone
                   (fwd+bwd of q, k, v at L = 2048, no projections): ours blockwise vs torch SDPA,
                   and its forward pass alone with the row max folded or reduced, vs SDPA's
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
# pylint: disable=g-import-not-at-top,wrong-import-position
import hyena_jax  # pylint: disable=unused-import  # Applies the package's XLA:CPU defaults.

import jax
import jax.numpy as jnp

import timing  # benchmarks/, the script's own directory


def _median(fn, *args, n: int = 10) -> float:
  """Median seconds of n calls after a warm-up; fn may be jitted JAX or eager torch."""
  return timing.median_s(fn, *args, reps=n)


def _attention_tiles(key, torch) -> dict:
  from hyena_jax import ops  # pylint: disable=g-import-not-at-top
  H, K, bq, bk = 12, 64, 512, 256
  kq, kk, kp = jax.random.split(key, 3)
  q, k = jax.random.normal(kq, (1, H, bq, K)), jax.random.normal(kk, (1, H, bk, K))
  p = jax.random.normal(kp, (1, H, bq, bk))
  flops = 2 * H * bq * bk * K
  qt, kt, pt = torch.randn(1, H, bq, K), torch.randn(1, H, bk, K), torch.randn(1, H, bq, bk)
  res = {
      'tile_qk_xla_gflops': flops / _median(jax.jit(
          lambda q, k: jnp.einsum('bhqk,bhsk->bhqs', q, k)), q, k) / 1e9,
      'tile_qk_torch_gflops': flops / _median(lambda: qt @ kt.transpose(-1, -2)) / 1e9,
      'tile_pv_xla_gflops': flops / _median(jax.jit(
          lambda p, k: jnp.einsum('bhqs,bhsk->bhqk', p, k)), p, k) / 1e9,
      'tile_pv_torch_gflops': flops / _median(lambda: pt @ kt) / 1e9,
      'tile_exp_xla_s': _median(jax.jit(jnp.exp), p),
      'tile_exp_torch_s': _median(lambda: torch.exp(pt)),
      # The online softmax's row max and sum by XLA's reduce (a reduce-window of 32 on XLA:CPU),
      # and the max by the elementwise fold onto 32 lanes that ops.attention uses.
      'tile_rowmax_reduce_s': _median(jax.jit(lambda p: p.max(-1)), p),
      'tile_rowmax_lanes_s': _median(jax.jit(ops.attention._row_max), p),  # pylint: disable=protected-access
      'tile_rowsum_reduce_s': _median(jax.jit(lambda p: p.sum(-1)), p),
      'tile_rowmax_torch_s': _median(lambda: pt.amax(-1)),
  }
  L = 2048
  q, k, v, w = (jax.random.normal(jax.random.key(i), (1, H, L, K)) for i in range(4))
  core = lambda q, k, v, w: jnp.sum(
      ops.attention.blockwise_causal_attention_heads_major(q, k, v) * w)
  res['core_L2048_ours_s'] = _median(jax.jit(jax.grad(core, argnums=(0, 1, 2))), q, k, v, w, n=5)
  qt, kt, vt = (torch.randn(1, H, L, K, requires_grad=True) for _ in range(3))
  wt = torch.randn(1, H, L, K)

  def torch_core():
    for t in (qt, kt, vt):
      t.grad = None
    (torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True) * wt
     ).sum().backward()

  res['core_L2048_torch_sdpa_s'] = _median(torch_core, n=5)
  # The forward pass with the row max folded (ops.attention) and by XLA's plain reduce.
  # pylint: disable=protected-access
  fold = ops.attention._row_max
  for name, row_max in (('fold', fold), ('reduce', lambda x: x.max(-1))):
    ops.attention._row_max = row_max
    fwd = jax.jit(lambda q, k, v: ops.attention._flash_forward(q, k, v, 512, 256))
    res[f'forward_L2048_max_{name}_s'] = _median(fwd.lower(q, k, v).compile(), q, k, v, n=10)
  ops.attention._row_max = fold
  with torch.no_grad():
    res['forward_L2048_torch_sdpa_s'] = _median(
        lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True), n=10)
  return res


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--out', default=None)
  a = p.parse_args(argv)
  import torch
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  rounds = [_measure(torch) for _ in range(a.rounds)]
  res = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
  for k, v in res.items():
    print(f'{k}: {v:.4f}  (' + ', '.join(f'{r[k]:.4f}' for r in rounds) + ')')
  if a.out:
    timing.write_json(a.out, {'cpu': timing.cpu(), 'jax': jax.__version__,
                              'torch': torch.__version__,
                              'xla_flags': os.environ.get('XLA_FLAGS', ''), 'results': res,
                              'rounds': rounds})
    print(f'wrote {a.out}')


def _measure(torch) -> dict:
  key = jax.random.key(0)
  res = {}
  x = jax.random.normal(key, (8194, 2304))
  res['transpose_plain_s'] = _median(jax.jit(lambda x: x.T), x[:8192])
  res['transpose_after_slice_s'] = _median(jax.jit(lambda x: x[2:].T), x)
  for L in (1024, 8192):
    u = jax.random.normal(key, (768, L))
    res[f'fft_xla_L{L}_s'] = _median(jax.jit(lambda u, L=L: jnp.fft.rfft(u, n=2 * L)), u)
    ut = torch.randn(768, L)
    res[f'fft_torch_L{L}_s'] = _median(lambda ut=ut, L=L: torch.fft.rfft(ut, n=2 * L))
  u, g = jax.random.normal(key, (2, 768, 8192))
  res['pad_gate_xla_L8192_s'] = _median(jax.jit(lambda u, g: jnp.pad(u * g, ((0, 0), (0, 8192)))),
                                        u, g)
  res['fft_prepadded_xla_L8192_s'] = _median(jax.jit(jnp.fft.rfft), jnp.pad(u, ((0, 0), (0, 8192))))
  ku, kw = jax.random.split(key)
  u, w = jax.random.normal(ku, (8192, 768)), jax.random.normal(kw, (768, 2304))
  flops = 2 * 8192 * 768 * 2304
  for dt in ('float32', 'bfloat16'):
    sec = _median(jax.jit(lambda u, w: u @ w), u.astype(dt), w.astype(dt))
    res[f'gemm_{dt}_gflops'] = flops / sec / 1e9
  ut, wt = torch.randn(8192, 768), torch.randn(768, 2304)
  res['gemm_torch_float32_gflops'] = flops / _median(lambda: ut @ wt) / 1e9
  res.update(_attention_tiles(key, torch))
  return res


if __name__ == '__main__':
  main()
