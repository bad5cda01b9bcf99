"""The Longhorn mixer (Liu et al. 2024; Cranial-XIX/longhorn `Longhorn`): Mamba's block with
the online-regression recurrence of hyena_jax.ops.longhorn in place of the selective scan.

  x, z = in_proj(u)                         d -> 2 E d, no bias
  x = silu(causal depthwise conv_4(x))      with bias
  dt_low, k, q = x_proj(x)                  E d -> R + 2 N, no bias (R = ceil(d / 16))
  eps = step_size(dt_head(dt_low), k)       R -> E d, bias 0: beta = sigmoid starts near 0.5
  y = out_proj((scan(x, k, q, eps) + D x) * silu(z))

The official stack uses these blocks without an MLP and twice the layers; here that is the
LM with model.d_inner = 0 (configs give the layer count).
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hyena_jax import ops
from hyena_jax.models.hyena import dense
from hyena_jax.ops import longhorn as lh

State = dict[str, jax.Array]  # {'conv': (B, K-1, E d) pre-conv inputs, 'ssm': (B, E d, N) f32}


def dt_rank(d_model: int, cfg: ml_collections.ConfigDict) -> int:
  return cfg.dt_rank or math.ceil(d_model / 16)


class LonghornMixer(nnx.Module):
  """(B, L, d) -> (B, L, d); `mixer(u, state)` also returns the state after the last token."""

  def __init__(self, d_model: int, cfg: ml_collections.ConfigDict, *, n_layer: int = 1,
               rngs: nnx.Rngs):
    c = cfg.longhorn
    self.d_inner, self.d_state, self.d_conv = c.expand * d_model, c.d_state, c.d_conv
    self.dt_rank = dt_rank(d_model, c)
    self.scan_impl, self.chunk = lh.resolve_scan(c.scan), c.chunk
    dtype = jnp.dtype(cfg.dtype)
    Di = self.d_inner
    self.in_proj = dense(d_model, 2 * Di, rngs, use_bias=False, dtype=dtype)
    # PyTorch Conv1d default init (fan_in = K for a depthwise conv), as the official code.
    bound = 1.0 / math.sqrt(c.d_conv)
    uniform = lambda shape: jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound)
    self.conv_kernel = nnx.Param(uniform((c.d_conv, Di)))
    self.conv_bias = nnx.Param(uniform((Di,)))
    self.x_proj = dense(Di, self.dt_rank + 2 * c.d_state, rngs, use_bias=False, dtype=dtype)
    self.dt_head = dense(self.dt_rank, Di, rngs, dtype=dtype)
    self.D = nnx.Param(jnp.ones((Di,), jnp.float32))
    self.out_proj = dense(Di, d_model, rngs, use_bias=False, std=0.02 / math.sqrt(2 * n_layer),
                          dtype=dtype)

  def init_state(self, batch_size: int, dtype=jnp.float32, *, max_len: int = 0) -> State:
    """O(1) in context: max_len is accepted for the mixer interface and unused."""
    del max_len
    return {'conv': jnp.zeros((batch_size, self.d_conv - 1, self.d_inner), dtype),
            'ssm': jnp.zeros((batch_size, self.d_inner, self.d_state), jnp.float32)}

  def __call__(self, u_BxLxD: jax.Array, state: State | None = None, *,
               key: jax.Array | None = None, segment_ids: jax.Array | None = None,
               pos: jax.Array | int = 0):
    """y, or (y, new_state) when a state is given (decode / streaming: exact for any split).

    segment_ids_BxL (packed sequences): the conv and the recurrence restart wherever the id
    changes. `key` is accepted for the mixer interface; there is no dropout inside.
    """
    del key, pos  # The state carries everything the position would tell.
    R, N = self.dt_rank, self.d_state
    x_BxLxE, z_BxLxE = jnp.split(self.in_proj(u_BxLxD), 2, axis=-1)
    left = None if state is None else state['conv']
    xc = ops.causal_depthwise_conv(x_BxLxE, self.conv_kernel[...], self.conv_bias[...],
                                   left_BxKm1xC=left, segment_ids_BxL=segment_ids)
    xc = jax.nn.silu(xc)
    dt_low, k_BxLxN, q_BxLxN = jnp.split(self.x_proj(xc), [R, R + N], axis=-1)
    eps_BxLxE = lh.step_size(self.dt_head(dt_low), k_BxLxN)
    reset = None
    if segment_ids is not None:
      reset = jnp.pad(segment_ids[:, 1:] != segment_ids[:, :-1], ((0, 0), (1, 0)))
    S0 = None if state is None else state['ssm']
    y_BxLxE, S = lh.scan(xc, k_BxLxN, q_BxLxN, eps_BxLxE, S0, reset_BxL=reset,
                         impl=self.scan_impl, chunk=self.chunk)
    y_BxLxE = (y_BxLxE + self.D[...][None, None] * ops.f32(xc)) * jax.nn.silu(ops.f32(z_BxLxE))
    out = self.out_proj(y_BxLxE.astype(u_BxLxD.dtype))
    if state is None:
      return out
    K1 = self.d_conv - 1
    tail = jnp.concatenate([state['conv'].astype(x_BxLxE.dtype), x_BxLxE], axis=1)
    tail = tail[:, tail.shape[1] - K1:]
    return out, {'conv': tail.astype(state['conv'].dtype), 'ssm': S}
