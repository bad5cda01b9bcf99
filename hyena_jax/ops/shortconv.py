"""Short depthwise causal convolution (Hyena's explicit filter on the projections)."""

import jax
import jax.numpy as jnp


def causal_depthwise_conv(x_BxLxC: jax.Array, w_KxC: jax.Array, b_C: jax.Array | None = None
                          ) -> jax.Array:
  """y_t = sum_k w_k x_{t-(K-1)+k} + b: output t sees inputs t-K+1 .. t.

  w_KxC uses PyTorch Conv1d's cross-correlation order (w[K-1] multiplies x_t), so a
  safari `short_filter.weight` of shape (C, 1, K) maps to w_KxC = weight[:, 0, :].T.
  K is small (3), so shifted multiply-adds beat a general convolution on every backend.
  """
  K, L = w_KxC.shape[0], x_BxLxC.shape[1]
  xp = jnp.pad(x_BxLxC, ((0, 0), (K - 1, 0), (0, 0)))
  w = w_KxC.astype(x_BxLxC.dtype)
  y = xp[:, K - 1:K - 1 + L] * w[K - 1][None, None]
  for k in range(K - 1):
    y = y + xp[:, k:k + L] * w[k][None, None]
  if b_C is not None:
    y = y + b_C.astype(x_BxLxC.dtype)[None, None]
  return y
