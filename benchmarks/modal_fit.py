"""Modal distillation (hyena_jax.ops.modal): fit error vs order on a HyenaFilter's taps.

  python benchmarks/modal_fit.py [--L 1024 --channels 32 --emb_dim 33 --w 1.0 --steps 50]

No trained checkpoint is used: the filter is a freshly initialised HyenaFilter (the worst case
for smoothness at w >= 10; trained filters are what the Laughing Hyena paper distils). Prints,
per order N (N complex modes = 2N real states), the relative L2 error ||h - h_hat|| / ||h||
over channels before (init) and after refinement, and the fit time (includes compilation).
"""

import argparse
import time

import numpy as np
from flax import nnx

from hyena_jax.models.hyena import HyenaFilter
from hyena_jax.ops import modal


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--L', type=int, default=1024)
  p.add_argument('--channels', type=int, default=32)
  p.add_argument('--emb_dim', type=int, default=33)
  p.add_argument('--w', type=float, default=1.0)
  p.add_argument('--steps', type=int, default=50)
  p.add_argument('--orders', type=int, nargs='+', default=[2, 4, 8, 16, 32])
  args = p.parse_args()
  h = np.asarray(HyenaFilter(args.channels, l_max=args.L, emb_dim=args.emb_dim, w=args.w,
                             rngs=nnx.Rngs(0))(args.L))
  print(f'HyenaFilter random init: L={args.L} C={args.channels} emb_dim={args.emb_dim} '
        f'w={args.w}, LM steps={args.steps}')
  print(f"{'order':>5} {'init mean':>10} {'init max':>10} {'mean':>10} {'median':>10} "
        f"{'max':>10} {'time s':>7}")
  for order in args.orders:
    t = time.perf_counter()
    _, _, info = modal.fit_modal(h, order, steps=args.steps)
    dt = time.perf_counter() - t
    err, init = np.asarray(info['rel_err']), info['init_rel_err']
    print(f'{order:>5} {init.mean():>10.2e} {init.max():>10.2e} {err.mean():>10.2e} '
          f'{np.median(err):>10.2e} {err.max():>10.2e} {dt:>7.1f}')


if __name__ == '__main__':
  main()
