"""Short depthwise causal convolution (Hyena's explicit filter on the projections)."""

import jax
import jax.numpy as jnp


def causal_depthwise_conv(x_BxLxC: jax.Array, w_KxC: jax.Array, b_C: jax.Array | None = None,
                          *, left_BxKm1xC: jax.Array | None = None,
                          segment_ids_BxL: jax.Array | None = None) -> jax.Array:
  """y_t = sum_k w_k x_{t-(K-1)+k} + b: output t sees inputs t-K+1 .. t.

  w_KxC uses PyTorch Conv1d's cross-correlation order (w[K-1] multiplies x_t), so a
  safari `short_filter.weight` of shape (C, 1, K) maps to w_KxC = weight[:, 0, :].T.
  K is small (3, 4), so shifted multiply-adds beat a general convolution on every backend.

  `left_BxKm1xC` are the K-1 inputs before x (a decode cache; zeros when None), so a sequence
  split anywhere gives the same outputs. With `segment_ids_BxL` a tap never reaches across a
  change of segment id (packed sequences); the cached left inputs count as x_0's segment.
  """
  K, L = w_KxC.shape[0], x_BxLxC.shape[1]
  if left_BxKm1xC is None:
    xp = jnp.pad(x_BxLxC, ((0, 0), (K - 1, 0), (0, 0)))
  else:
    xp = jnp.concatenate([left_BxKm1xC.astype(x_BxLxC.dtype), x_BxLxC], axis=1)
  if segment_ids_BxL is not None:
    sp = jnp.concatenate([jnp.repeat(segment_ids_BxL[:, :1], K - 1, 1), segment_ids_BxL], 1)
  w = w_KxC.astype(x_BxLxC.dtype)
  y = xp[:, K - 1:K - 1 + L] * w[K - 1][None, None]
  for k in range(K - 1):
    tap = xp[:, k:k + L]
    if segment_ids_BxL is not None:
      tap = jnp.where((sp[:, k:k + L] == segment_ids_BxL)[..., None], tap, 0)
    y = y + tap * w[k][None, None]
  if b_C is not None:
    y = y + b_C.astype(x_BxLxC.dtype)[None, None]
  return y
