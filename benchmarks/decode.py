"""Decode speed per mixer: seconds per generated token after a context of C tokens.

  python benchmarks/decode.py --contexts 1024,2048,8192 \
      --out benchmarks/results/decode_cpu.json

For every mixer (equal width and depth: d_model 512, 4 blocks with MLPs, vocab 4,096, batch 1,
float32) and context C, the cache is filled by one prefill of C tokens, then single-token
decode steps (one jitted LM.decode call each, timed to block_until_ready) give the median
seconds per token. 'recompute' is the full forward over the C+1 tokens for each new token
(what a decoder without a cache does, and what safari offers). 'hyena modal' decodes with
--modal_order poles per channel (O(1) per token). Its speed does not depend on the pole values,
so this benchmark installs random stable poles instead of fitting (the fit and its accuracy are
benchmarks/modal_decode.py's subject). The goal (README "Generation"): Hyena cached >= 20x faster per token than
recompute at C = 2K; Longhorn and modal Hyena flat in C.
"""

import argparse
import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
from flax import nnx

from hyena_jax import config_lib
from hyena_jax.models import LM
import timing


def model_for(mixer: str, l_max: int, d_model: int, n_layer: int, vocab: int) -> LM:
  c = config_lib.base_config().model
  c.update(mixer=mixer, d_model=d_model, n_layer=n_layer, vocab_size=vocab, l_max=l_max,
           d_inner=4 * d_model)
  c.attention.num_heads = d_model // 64
  return LM(c, rngs=nnx.Rngs(0))


def bench(kind: str, C: int, args) -> dict:
  mixer, _, method = kind.partition(' ')
  model = model_for(mixer, C + args.runs + 8, args.d_model, args.n_layer, args.vocab)
  if method == 'modal':
    from hyena_jax.models.hyena import Modal  # pylint: disable=g-import-not-at-top
    for i, block in enumerate(model.blocks):
      ch = block.mixer.filter.bias.shape[0]
      k1, k2 = jax.random.split(jax.random.key(i))
      poles = jax.random.uniform(k1, (ch, args.modal_order), minval=0.9, maxval=0.999) * jnp.exp(
          1j * jax.random.uniform(k2, (ch, args.modal_order), maxval=jnp.pi))
      block.mixer.modal_poles = nnx.data(Modal(poles.astype(jnp.complex64)))
      block.mixer.modal_residues = nnx.data(Modal(0.01 * poles.astype(jnp.complex64)))
  graphdef, state = nnx.split(model)
  toks = jax.random.randint(jax.random.key(0), (1, C + 1), 0, args.vocab)
  if method == 'recompute':
    fwd = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t)[:, -1])
    sec = timing.median_s(fwd, state, toks, reps=args.recompute_runs)
    return {'kind': kind, 'context': C, 'sec_per_token': sec}
  prefill = jax.jit(lambda s, t: nnx.merge(graphdef, s).decode(
      t, nnx.merge(graphdef, s).init_cache(1, C + args.runs + 2)))
  # Each timed step decodes the next position: contexts C+1 .. C+runs+1.
  _, cache = jax.block_until_ready(prefill(state, toks[:, :C]))
  # The cache is donated, as in generate()'s lax.scan carry: updated in place, not copied.
  step = jax.jit(lambda s, t, cache: nnx.merge(graphdef, s).decode(t, cache), donate_argnums=2)
  tok = toks[:, C:C + 1]
  one = timing.chained(lambda cache: step(state, tok, cache)[1], cache)
  return {'kind': kind, 'context': C, 'sec_per_token': timing.median_s(one, reps=args.runs)}

def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--contexts', default='1024,2048,8192')
  p.add_argument('--kinds', default='hyena cached,hyena recompute,hyena modal,attention cached,'
                 'attention recompute,longhorn cached')
  p.add_argument('--d_model', type=int, default=512)
  p.add_argument('--n_layer', type=int, default=4)
  p.add_argument('--vocab', type=int, default=4096)
  p.add_argument('--modal_order', type=int, default=16)
  p.add_argument('--runs', type=int, default=30)
  p.add_argument('--recompute_runs', type=int, default=3)
  p.add_argument('--out', default=None)
  args = p.parse_args()
  rows = []
  for C in [int(c) for c in args.contexts.split(',')]:
    for kind in args.kinds.split(','):
      r = bench(kind, C, args)
      rows.append(r)
      print(f'[{kind} C={C}] {r["sec_per_token"] * 1e3:.2f} ms/token', flush=True)
  by = {(r['kind'], r['context']): r['sec_per_token'] for r in rows}
  print('\n| context | ' + ' | '.join(f'{k} ms/token' for k in args.kinds.split(',')) +
        ' | Hyena recompute / cached |')
  print('|---' * (len(args.kinds.split(',')) + 2) + '|')
  for C in sorted({r['context'] for r in rows}):
    cells = [f'{by[(k, C)] * 1e3:.2f}' if (k, C) in by else '-' for k in args.kinds.split(',')]
    ratio = (by.get(('hyena recompute', C), 0) / by[('hyena cached', C)]
             if ('hyena cached', C) in by else 0)
    print(f'| {C} | ' + ' | '.join(cells) + f' | {ratio:.1f} |')
  env = {'jax': jax.__version__, 'backend': jax.default_backend(),
         'device': str(jax.devices()[0].device_kind), 'cpu': timing.cpu(),
         'cpu_threads': os.cpu_count(),
         'XLA_FLAGS': os.environ.get('XLA_FLAGS', '')}
  print(env)
  if args.out:
    timing.write_json(args.out, {'args': vars(args), 'env': env, 'rows': rows})


if __name__ == '__main__':
  main()
