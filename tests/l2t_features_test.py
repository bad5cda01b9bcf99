"""DLN input features against a brute-force NumPy computation (float64, loop over tokens)."""

import jax.numpy as jnp
import numpy as np

from hyena_jax.l2t import features


def _brute(logits, targets, vocab_size):
  B, L = targets.shape
  out = np.zeros((B, L, 5))
  for b in range(B):
    for t in range(L):
      z = logits[b, t, :vocab_size].astype(np.float64)
      lp = z - (np.log(np.sum(np.exp(z - z.max()))) + z.max())
      y = targets[b, t]
      wrong = np.delete(lp, y)
      out[b, t] = [lp[y], wrong.max(), lp[y] - wrong.max(), wrong.mean(), wrong.std()]
  return out


def test_features_match_brute_force_and_ignore_padded_columns():
  rng = np.random.default_rng(0)
  B, L, V, Vpad = 2, 6, 11, 16
  logits = rng.normal(0, 3, (B, L, Vpad)).astype(np.float32)
  logits[..., V:] = -1e9  # The LM's padded rows: they must not enter the wrong-class stats.
  targets = rng.integers(0, V, (B, L))
  got = np.asarray(features.token_features(jnp.asarray(logits), jnp.asarray(targets), V))
  np.testing.assert_allclose(got, _brute(logits, targets, V), rtol=1e-5, atol=1e-5)


def test_no_feature_is_constant_across_tokens():
  # The official code's inverted mask made margin == 0 and lp_wrong_max == lp_y everywhere.
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(0, 2, (3, 8, 20)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 20, (3, 8)))
  f = np.asarray(features.token_features(logits, targets))
  assert np.all(f.reshape(-1, 5).std(axis=0) > 1e-3)
  assert not np.allclose(f[..., 1], f[..., 0])


def test_standardize_per_sequence_zero_mean_unit_std():
  rng = np.random.default_rng(2)
  f = jnp.asarray(rng.normal(3, 5, (2, 64, 5)), jnp.float32)
  z = np.asarray(features.standardize_per_sequence(f))
  np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=1), 1.0, atol=1e-3)


def test_paper_mask_bug_emulation_reproduces_the_official_constants():
  # l2t.paper_mask_bug=True: max-wrong == lp_y, margin == 0, "wrong" mean ~ -1e9 (V-1)/V.
  rng = np.random.default_rng(3)
  V = 50
  logits = jnp.asarray(rng.normal(0, 2, (2, 6, V)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, V, (2, 6)))
  f = np.asarray(features.token_features_inverted_mask(logits, targets, V))
  good = np.asarray(features.token_features(logits, targets, V))
  np.testing.assert_array_equal(f[..., 1], f[..., 0])
  np.testing.assert_array_equal(f[..., 2], 0.0)
  np.testing.assert_allclose(f[..., 3], -1e9 * (V - 1) / V, rtol=1e-6)
  np.testing.assert_allclose(f[..., 0], good[..., 0], rtol=1e-6)
