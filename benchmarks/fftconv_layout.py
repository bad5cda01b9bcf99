"""fftconv fwd+bwd with the FFT over axis 1 of (B, L, C) (what ops.fftconv does) vs over the
last axis of a (B, C, L) transpose, B=1, C=768: does the layout matter on XLA:CPU?

  python benchmarks/fftconv_layout.py   # prints a table; raw: benchmarks/results/fftconv_layout_cpu.json
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hyena_jax  # pylint: disable=unused-import,g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from hyena_jax import ops  # pylint: disable=g-import-not-at-top,wrong-import-position
import timing  # pylint: disable=g-import-not-at-top,wrong-import-position  # benchmarks/


def fftconv_last_axis(u_BxLxC, h_LxC, skip_C):
  L = u_BxLxC.shape[1]
  uf = jnp.fft.rfft(jnp.swapaxes(u_BxLxC, 1, 2), n=2 * L)
  hf = jnp.fft.rfft(h_LxC.T, n=2 * L)
  y_BxCxL = jnp.fft.irfft(uf * hf[None], n=2 * L)[..., :L]
  return jnp.swapaxes(y_BxCxL, 1, 2) + u_BxLxC * skip_C[None, None]


def main():
  rows = []
  for L in (2048, 4096, 8192):
    u = jax.random.normal(jax.random.PRNGKey(0), (1, L, 768))
    h = jax.random.normal(jax.random.PRNGKey(1), (L, 768))
    skip = jnp.ones((768,))
    row = {'L': L}
    for name, f in (('axis1', ops.fftconv), ('last_axis', fftconv_last_axis)):
      g = jax.jit(jax.grad(lambda u, h, s: (f(u, h, s) ** 2).sum(), argnums=(0, 1)))
      row[name + '_s'] = timing.median_s(g, u, h, skip, reps=7)
    rows.append(row)
    print(f"L={L}: axis1 {row['axis1_s']:.4f} s | last axis {row['last_axis_s']:.4f} s")
  out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                     'fftconv_layout_cpu.json')
  with open(out, 'w') as f:
    json.dump({'xla_flags': os.environ.get('XLA_FLAGS', ''), 'cpu': timing.cpu(), 'rows': rows},
              f, indent=1)


if __name__ == '__main__':
  main()
