"""Batched generation: one prefill of the shortest prompt, then one cached decode step per
position, all inside one jitted lax.scan.

Prompts of different lengths share the batch without padding tricks: every row decodes
position by position and, while a row is still inside its prompt, its prompt token is fed
instead of the sample (so each row sees exactly its own prompt, for every mixer).

  from hyena_jax.generate import generate
  new = generate.generate(model, [[5, 6, 7], [8]], max_new_tokens=20, temperature=0.8,
                          top_p=0.95, seed=0)          # list of 2 lists of 20 ids

method: 'cached' (default: KV cache / Longhorn state / Hyena's cached conv history, O(context)
or O(1) per token) | 'recompute' (the full forward over the whole buffer at every token: the
reference and the benchmark baseline).
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyena_jax.generate import sampling

METHODS = ('cached', 'recompute')


@functools.partial(jax.jit, static_argnames=('graphdef', 'm', 'method', 'temperature', 'top_k',
                                             'top_p'))
def _generate(graphdef, state, prompt_BxS, lengths_B, key, *, m: int, method: str,
              temperature: float, top_k: int, top_p: float):
  """Token buffer (B, S): prompts, then samples up to each row's length + max_new."""
  model = nnx.merge(graphdef, state)
  B, S = prompt_BxS.shape
  pick = functools.partial(sampling.sample, temperature=temperature, top_k=top_k, top_p=top_p)

  def choose(t, last_BxV, tokens_BxS):
    sampled_B = pick(jax.random.fold_in(key, t), last_BxV)
    tok_B = jnp.where(t < lengths_B, prompt_BxS[:, t], sampled_B)
    return tok_B, tokens_BxS.at[:, t].set(tok_B)

  if method == 'recompute':
    def step(tokens_BxS, t):
      last_BxV = jax.lax.dynamic_index_in_dim(model(tokens_BxS), t - 1, axis=1, keepdims=False)
      return choose(t, last_BxV, tokens_BxS)[1], None
    tokens_BxS, _ = jax.lax.scan(step, prompt_BxS, jnp.arange(m, S))
    return tokens_BxS

  logits_BxMxV, cache = model.decode(prompt_BxS[:, :m], model.init_cache(B, S))

  def step(carry, t):
    cache, last_BxV, tokens_BxS = carry
    tok_B, tokens_BxS = choose(t, last_BxV, tokens_BxS)
    logits_Bx1xV, cache = model.decode(tok_B[:, None], cache)
    return (cache, logits_Bx1xV[:, 0], tokens_BxS), None

  (_, _, tokens_BxS), _ = jax.lax.scan(step, (cache, logits_BxMxV[:, -1], prompt_BxS),
                                       jnp.arange(m, S))
  return tokens_BxS


def generate(model: nnx.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
             eos_id: int | None = None, method: str = 'cached', buffer_len: int | None = None,
             prefill_len: int | None = None) -> list[list[int]]:
  """max_new_tokens new ids per prompt (cut after eos_id when given), greedy at temperature 0.

  The same seed gives the same samples. buffer_len (>= longest prompt + max_new_tokens) and
  prefill_len (<= shortest prompt) fix the compiled shapes, so callers with many prompt
  lengths (the lm-eval adapter) can bucket them; the results do not change.
  """
  if method not in METHODS:
    raise ValueError(f'method={method!r}: choose from {METHODS}')
  if not prompts or any(len(p) == 0 for p in prompts):
    raise ValueError('generate needs at least one prompt, each with at least one token '
                     '(e.g. the end-of-text id)')
  if max_new_tokens < 1:
    raise ValueError(f'max_new_tokens={max_new_tokens} must be >= 1')
  if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
    raise ValueError(f'temperature={temperature} must be >= 0, top_p={top_p} in (0, 1], '
                     f'top_k={top_k} >= 0')
  lengths = np.array([len(p) for p in prompts], np.int32)
  S = int(lengths.max()) + max_new_tokens
  if buffer_len is not None:
    if buffer_len < S:
      raise ValueError(f'buffer_len={buffer_len} < longest prompt + max_new_tokens = {S}')
    S = buffer_len
  m = int(lengths.min()) if prefill_len is None else prefill_len
  if not 1 <= m <= lengths.min():
    raise ValueError(f'prefill_len={m} must be in [1, shortest prompt {lengths.min()}]')
  vocab = getattr(model, 'vocab_size', None)
  buf = np.zeros((len(prompts), S), np.int32)
  for i, p in enumerate(prompts):
    p = np.asarray(p, np.int64)
    if vocab is not None and (p.min() < 0 or p.max() >= vocab):
      raise ValueError(f'prompt {i} has ids outside [0, {vocab})')
    buf[i, :len(p)] = p
  graphdef, state = nnx.split(model)
  out = np.asarray(_generate(graphdef, state, jnp.asarray(buf), jnp.asarray(lengths),
                             jax.random.key(seed), m=m, method=method,
                             temperature=float(temperature), top_k=int(top_k),
                             top_p=float(top_p)))
  new = [out[i, n:n + max_new_tokens].tolist() for i, n in enumerate(lengths)]
  if eos_id is not None:
    new = [r[:r.index(eos_id) + 1] if eos_id in r else r for r in new]
  return new
