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
    self.num_heads, self.rotary_base, self.d_model = a.num_heads, a.rotary_base, d_model
    self.rotary_dims = rotary_dims(d_model, a)
    # A config.json saved before the field existed builds the same model.
    self.impl = a.get('impl', 'auto')
    if self.impl not in ops.attention.IMPLS:
      raise ValueError(f'model.attention.impl={self.impl!r} is unknown; choose from '
                       f'{list(ops.attention.IMPLS)}')
    dtype = jnp.dtype(cfg.dtype)
    self.qkv = dense(d_model, 3 * d_model, rngs, dtype=dtype)
    self.out_proj = dense(d_model, d_model, rngs, std=0.02 / math.sqrt(2 * n_layer), dtype=dtype)

  def init_state(self, batch_size: int, dtype=jnp.float32, *, max_len: int) -> dict:
    """KV cache: slot s holds the (rotated) key and the value of position s."""
    H = self.num_heads
    shape = (batch_size, max_len, H, self.d_model // H)
    return {'k': jnp.zeros(shape, dtype), 'v': jnp.zeros(shape, dtype)}

  def __call__(self, u_BxLxD: jax.Array, state: dict | None = None, *,
               key: jax.Array | None = None, pos: jax.Array | int = 0):
    """y, or (y, new_state) for tokens at positions pos..pos+L-1 given a KV cache.

    `key` is accepted for the mixer interface; there is no attention dropout (yet)."""
    del key
    B, L, D = u_BxLxD.shape
    H = self.num_heads
    qkv_BxLxHx3K = self.qkv(u_BxLxD).reshape(B, L, H, 3 * (D // H))
    if state is None and ops.attention.resolve_impl(self.impl, L) == 'blockwise':
      return self._blockwise(qkv_BxLxHx3K)
    q, k, v = jnp.split(qkv_BxLxHx3K, 3, axis=-1)
    offset = 0 if state is None else pos
    q = ops.rotary(q, self.rotary_dims, self.rotary_base, offset)
    k = ops.rotary(k, self.rotary_dims, self.rotary_base, offset)
    if state is None:
      return self.out_proj(ops.attend(q, k, v, impl=self.impl).reshape(B, L, D))
    put = lambda cache, x: jax.lax.dynamic_update_slice_in_dim(cache, x.astype(cache.dtype),
                                                               pos, axis=1)
    new_state = {'k': put(state['k'], k), 'v': put(state['v'], v)}
    y_BxLxHxK = ops.cached_attention(q, new_state['k'], new_state['v'], pos)
    return self.out_proj(y_BxLxHxK.reshape(B, L, D)), new_state

  def _blockwise(self, qkv_BxLxHx3K: jax.Array) -> jax.Array:
    """Training/prefill attention, heads-major from one plain transpose of the fused qkv.

    Splitting q/k/v first and transposing each makes XLA:CPU fuse slices into transposes, a
    slow loop (forward and backward); one standalone transpose, then minor-axis splits, is not.
    """
    B, L, H, _ = qkv_BxLxHx3K.shape
    qkv_BxHxLx3K = ops.channels.transpose_plain(qkv_BxLxHx3K, (0, 2, 1, 3))
    q, k, v = jnp.split(qkv_BxHxLx3K, 3, axis=-1)
    q = ops.rotary(q, self.rotary_dims, self.rotary_base, seq_axis=2)
    k = ops.rotary(k, self.rotary_dims, self.rotary_base, seq_axis=2)
    o_BxHxLxK = ops.attention.blockwise_causal_attention_heads_major(q, k, v)
    o_BxLxHxK = ops.channels.transpose_plain(o_BxHxLxK, (0, 2, 1, 3))
    return self.out_proj(o_BxLxHxK.reshape(B, L, self.d_model))
