"""Causal multi-head self-attention with rotary embeddings (the Transformer baseline mixer)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hyena_jax import ops
from hyena_jax.models.hyena import dense


def rotary_dims(d_model: int, a: ml_collections.ConfigDict) -> int:
  """GPT-NeoX's rotary_ndims = int(head_dim * rotary_pct)."""
  return int(d_model // a.num_heads * a.rotary_pct)


class CausalSelfAttention(nnx.Module):
  """y = out_proj(attn(rotary(q), rotary(k), v)), q, k, v from one fused projection.

  The fused output is laid out per head as [q_h, k_h, v_h] (GPT-NeoX `query_key_value`),
  so NeoX weights can later load as plain copies.
  """

  def __init__(self, d_model: int, cfg: ml_collections.ConfigDict, *, n_layer: int = 1,
               rngs: nnx.Rngs):
    a = cfg.attention
    if d_model % a.num_heads:
      raise ValueError(f'd_model={d_model} is not divisible by num_heads={a.num_heads}')
    self.num_heads, self.rotary_base = a.num_heads, a.rotary_base
    self.rotary_dims = rotary_dims(d_model, a)
    dtype = jnp.dtype(cfg.dtype)
    self.qkv = dense(d_model, 3 * d_model, rngs, dtype=dtype)
    self.out_proj = dense(d_model, d_model, rngs, std=0.02 / math.sqrt(2 * n_layer), dtype=dtype)

  def __call__(self, u_BxLxD: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
    """`key` is accepted for the mixer interface; there is no attention dropout (yet)."""
    del key
    B, L, D = u_BxLxD.shape
    H = self.num_heads
    qkv_BxLxHx3K = self.qkv(u_BxLxD).reshape(B, L, H, 3 * (D // H))
    q, k, v = jnp.split(qkv_BxLxHx3K, 3, axis=-1)
    q = ops.rotary(q, self.rotary_dims, self.rotary_base)
    k = ops.rotary(k, self.rotary_dims, self.rotary_base)
    y_BxLxHxK = ops.causal_attention(q, k, v)
    return self.out_proj(y_BxLxHxK.reshape(B, L, D))
