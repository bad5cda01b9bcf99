"""Causal softmax attention and GPT-NeoX rotary position embeddings."""

import jax
import jax.numpy as jnp


def rotary(x_BxLxHxK: jax.Array, rotary_dims: int, base: float = 10000.0,
           offset: jax.Array | int = 0) -> jax.Array:
  """GPT-NeoX rotary embedding on the first `rotary_dims` of each head, positions
  offset..offset+L-1 (offset > 0: tokens decoded after a cached prefix; may be traced).

  Half-split pairing (NeoX `rotate_half`): dim i rotates with dim i + rotary_dims/2 by angle
  t * base^(-2i/rotary_dims). The remaining K - rotary_dims dims pass through unchanged.
  Angles and the rotation run in float32; the result is cast back to x's dtype.
  """
  L, K = x_BxLxHxK.shape[1], x_BxLxHxK.shape[-1]
  if rotary_dims % 2 or not 0 <= rotary_dims <= K:
    raise ValueError(f'rotary_dims={rotary_dims} must be even and in [0, head dim {K}]')
  if rotary_dims == 0:
    return x_BxLxHxK
  half = rotary_dims // 2
  inv_freq_R = 1.0 / base**(jnp.arange(0, rotary_dims, 2, dtype=jnp.float32) / rotary_dims)
  t_L = jnp.arange(L, dtype=jnp.float32) + jnp.asarray(offset, jnp.float32)
  angle_LxR = t_L[:, None] * inv_freq_R[None, :]
  # Broadcast over batch and heads: (1, L, 1, R).
  cos = jnp.cos(angle_LxR)[None, :, None, :]
  sin = jnp.sin(angle_LxR)[None, :, None, :]
  x = x_BxLxHxK.astype(jnp.float32)
  x1, x2, rest = x[..., :half], x[..., half:rotary_dims], x[..., rotary_dims:]
  y = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], axis=-1)
  return y.astype(x_BxLxHxK.dtype)


def causal_attention(q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array
                     ) -> jax.Array:
  """softmax(q k^T / sqrt(K), causal) v per head; output (B, L, H, K) in v's dtype.

  Scores accumulate and the softmax runs in float32 whatever the input dtype (half precision
  logits overflow and lose small probabilities); the probabilities are cast back for p @ v.
  An explicit einsum: at this project's context lengths (<= a few thousand) it is as fast as
  a fused kernel and is the same code on every backend.
  """
  L, K = q_BxLxHxK.shape[1], q_BxLxHxK.shape[-1]
  s_BxHxLxL = jnp.einsum('bthk,bshk->bhts', q_BxLxHxK, k_BxLxHxK,
                         preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(K))
  causal_LxL = jnp.tril(jnp.ones((L, L), dtype=bool))
  # The diagonal is always kept, so no row is fully masked and the finite fill never wins.
  s_BxHxLxL = jnp.where(causal_LxL[None, None], s_BxHxLxL, jnp.finfo(jnp.float32).min)
  p_BxHxLxL = jax.nn.softmax(s_BxHxLxL, axis=-1)
  return jnp.einsum('bhts,bshk->bthk', p_BxHxLxL.astype(v_BxLxHxK.dtype), v_BxLxHxK)


def cached_attention(q_BxTxHxK: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array,
                     pos: jax.Array) -> jax.Array:
  """Decode-time attention: T queries at positions pos..pos+T-1 over a KV cache of S slots
  (slot s holds position s; slots past pos+T-1 are masked, whatever they hold).

  Cost O(T S) per call, so one decoded token costs O(S), with no L x L matrix. Same float32
  softmax as causal_attention, so cached decoding reproduces the full forward.
  """
  T, S, K = q_BxTxHxK.shape[1], k_BxSxHxK.shape[1], q_BxTxHxK.shape[-1]
  s_BxHxTxS = jnp.einsum('bthk,bshk->bhts', q_BxTxHxK, k_BxSxHxK,
                         preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(K))
  visible_TxS = jnp.arange(S)[None, :] <= pos + jnp.arange(T)[:, None]
  s_BxHxTxS = jnp.where(visible_TxS[None, None], s_BxHxTxS, jnp.finfo(jnp.float32).min)
  p_BxHxTxS = jax.nn.softmax(s_BxHxTxS, axis=-1)
  return jnp.einsum('bhts,bshk->bthk', p_BxHxTxS.astype(v_BxSxHxK.dtype), v_BxSxHxK)
