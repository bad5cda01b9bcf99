"""Per-token features of the student's predictions that the Dynamic Loss Network reads.

For target y and log-probabilities lp over the true vocabulary (padding rows excluded):
  [lp_y, max_{j != y} lp_j, lp_y - max_{j != y} lp_j, mean_{j != y} lp_j, std_{j != y} lp_j],
then z-scored over the positions of each sequence. The official L2T-Hyena code builds the
wrong-class mask inverted (it masks the wrong classes, not the target), so three of its five
features are constant; these are the intended ones.
"""

import jax
import jax.numpy as jnp

from hyena_jax.ops import f32

NUM_FEATURES = 5


def token_features(logits_BxLxV: jax.Array, targets_BxL: jax.Array,
                   vocab_size: int | None = None) -> jax.Array:
  """(B, L, 5) float32 raw features; `vocab_size` drops padded logit columns."""
  logits = f32(logits_BxLxV)
  if vocab_size is not None:
    logits = logits[..., :vocab_size]
  V = logits.shape[-1]
  lp_BxLxV = jax.nn.log_softmax(logits, axis=-1)
  lp_y = jnp.take_along_axis(lp_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
  is_y = jax.nn.one_hot(targets_BxL, V, dtype=jnp.bool_)
  max_wrong = jnp.max(jnp.where(is_y, -jnp.inf, lp_BxLxV), axis=-1)
  mean_wrong = (jnp.sum(lp_BxLxV, axis=-1) - lp_y) / (V - 1)
  # Two-pass variance (deviations from the wrong-class mean): no E[x^2] - E[x]^2 cancellation.
  dev_BxLxV = jnp.where(is_y, 0.0, lp_BxLxV - mean_wrong[..., None])
  std_wrong = jnp.sqrt(jnp.sum(dev_BxLxV**2, axis=-1) / (V - 1))
  return jnp.stack([lp_y, max_wrong, lp_y - max_wrong, mean_wrong, std_wrong], axis=-1)


def token_features_inverted_mask(logits_BxLxV: jax.Array, targets_BxL: jax.Array,
                                 vocab_size: int | None = None) -> jax.Array:
  """The official code's features, bug included (`l2t.paper_mask_bug`, for fidelity runs).

  Its mask pushes the wrong classes to -1e9 and leaves the target, so "max wrong" is lp_y,
  the margin is 0 and the "wrong-class" mean/std are float32 quantisation of -1e9 / 1e7.
  """
  logits = f32(logits_BxLxV)
  if vocab_size is not None:
    logits = logits[..., :vocab_size]
  lp_BxLxV = jax.nn.log_softmax(logits, axis=-1)
  lp_y = jnp.take_along_axis(lp_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
  is_y = jax.nn.one_hot(targets_BxL, logits.shape[-1], dtype=jnp.bool_)
  masked = lp_BxLxV + jnp.where(is_y, 0.0, -1e9)
  max_wrong = jnp.max(masked, axis=-1)
  return jnp.stack([lp_y, max_wrong, lp_y - max_wrong, masked.mean(-1), masked.std(-1)], -1)


def standardize_per_sequence(f_BxLxF: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Z-score each feature over the L positions of its sequence."""
  mean = f_BxLxF.mean(axis=1, keepdims=True)
  std = f_BxLxF.std(axis=1, keepdims=True)
  return (f_BxLxF - mean) / (std + eps)
