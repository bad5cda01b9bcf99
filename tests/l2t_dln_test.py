"""DLN output range and the weighted student loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hyena_jax.l2t import dln


def test_weights_stay_in_range_for_extreme_features():
  net = dln.DLN(16, w_min=0.05, w_max=0.95, rngs=nnx.Rngs(0))
  for scale in (0.0, 1.0, 1e3, -1e3):
    f = jnp.full((3, 8, 5), scale) + jax.random.normal(jax.random.PRNGKey(1), (3, 8, 5))
    w = np.asarray(net(f))
    assert w.shape == (3,) and np.all(w >= 0.05) and np.all(w <= 0.95), (scale, w)


def test_weights_start_at_one_half_then_depend_on_the_features_and_are_differentiable():
  net = dln.DLN(16, rngs=nnx.Rngs(0))
  f = jax.random.normal(jax.random.PRNGKey(2), (4, 8, 5))
  np.testing.assert_array_equal(np.asarray(net(f)), 0.5)  # Zero-initialised heads.
  graphdef, params = nnx.split(net, nnx.Param)
  g0 = jax.grad(lambda p: nnx.merge(graphdef, p)(f).sum())(params)
  assert float(jnp.abs(g0['out']['kernel'][...]).sum()) > 0  # ... and the teacher can move them.
  k = jax.random.PRNGKey(3)
  net.out.kernel[...] = jax.random.normal(k, net.out.kernel[...].shape)
  net.skip.kernel[...] = jax.random.normal(k, net.skip.kernel[...].shape)
  w = np.asarray(net(f))
  assert np.ptp(w) > 0  # Different sequences, different weights.
  graphdef, params = nnx.split(net, nnx.Param)
  g = jax.grad(lambda p: nnx.merge(graphdef, p)(f).sum())(params)
  assert sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g)) > 0


def test_weighted_loss_matches_its_definition_and_ignores_padded_columns():
  rng = np.random.default_rng(0)
  V, Vpad = 7, 8
  logits = rng.normal(0, 2, (2, 5, Vpad)).astype(np.float32)
  logits[..., V:] = -1e9
  targets = rng.integers(0, V, (2, 5))
  ce, reg = dln.per_sequence_terms(jnp.asarray(logits), jnp.asarray(targets), V)
  z = logits[..., :V]
  want_ce = optax.softmax_cross_entropy_with_integer_labels(z, targets).mean(1)
  np.testing.assert_allclose(ce, want_ce, rtol=1e-5)
  np.testing.assert_allclose(reg, (z**2).mean((1, 2)), rtol=1e-5)
  w = jnp.array([0.25, 0.75])
  got = dln.weighted_loss(ce, reg, w, lam=0.1)
  np.testing.assert_allclose(got, np.mean((1 - w) * want_ce + w * 0.1 * (z**2).mean((1, 2))),
                             rtol=1e-5)
