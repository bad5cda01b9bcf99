"""Small stateless helpers shared by the models."""

import jax
import jax.numpy as jnp


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout; identity when key is None (evaluation) or rate is 0.

  Explicit keys instead of NNX Rngs keep every model call a pure function of
  (params, inputs, key), which the L2T meta-gradient and the jitted steps rely on.
  """
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def f32(x: jax.Array) -> jax.Array:
  """At least float32: half precision is promoted, float64 (the X64 gradient tests) is kept."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))
