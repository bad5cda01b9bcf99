"""Next-token sampling from logits: temperature, top-k, top-p (nucleus), greedy at T = 0."""

import jax
import jax.numpy as jnp


def filter_logits(logits_BxV: jax.Array, *, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Logits with every token outside the top-k and outside the top-p nucleus set to -inf.

  The nucleus is the smallest set of most likely tokens whose probability reaches top_p (the
  token that crosses top_p is kept, so it is never empty). top_k = 0 / top_p = 1: no filter.
  """
  neg = jnp.finfo(jnp.float32).min
  logits_BxV = logits_BxV.astype(jnp.float32)
  if top_k and top_k < logits_BxV.shape[-1]:
    kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
    logits_BxV = jnp.where(logits_BxV < kth_Bx1, neg, logits_BxV)
  if top_p < 1.0:
    sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
    cum_BxV = jnp.cumsum(jax.nn.softmax(sorted_BxV, axis=-1), axis=-1)
    # Probability mass strictly before each sorted token; keep while it is below top_p.
    before_BxV = cum_BxV - jax.nn.softmax(sorted_BxV, axis=-1)
    keep_BxV = before_BxV < top_p
    cutoff_Bx1 = jnp.min(jnp.where(keep_BxV, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
    logits_BxV = jnp.where(logits_BxV < cutoff_Bx1, neg, logits_BxV)
  return logits_BxV


def sample(key: jax.Array, logits_BxV: jax.Array, *, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Token ids (B,) drawn from softmax(filtered logits / temperature); argmax when
  temperature == 0 (greedy: no randomness, the key is unused)."""
  if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
    raise ValueError(f'temperature={temperature} must be >= 0, top_p={top_p} in (0, 1], '
                     f'top_k={top_k} >= 0')
  if temperature == 0:
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  logits_BxV = filter_logits(logits_BxV, top_k=top_k, top_p=top_p)
  return jax.random.categorical(key, logits_BxV / temperature, axis=-1).astype(jnp.int32)
