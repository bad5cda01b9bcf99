"""hyena_jax.ops: FFT convolution, short convolution, implicit-filter pieces."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyena_jax import ops


def _rand(key, shape, dtype=jnp.float32):
  return jax.random.normal(jax.random.PRNGKey(key), shape).astype(dtype)


@pytest.mark.parametrize('L', [1, 7, 64, 100, 257])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_fftconv_equals_direct_convolution(L, dtype):
  u = _rand(0, (2, L, 5), dtype)
  h = _rand(1, (L, 5)) / math.sqrt(L)
  skip = _rand(2, (5,))
  y = ops.fftconv(u, h, skip)
  chex.assert_shape(y, u.shape)
  assert y.dtype == dtype
  # Independent reference: numpy's full linear convolution, truncated to the causal part.
  u64, h64 = np.asarray(u, np.float64), np.asarray(h, np.float64)
  want = np.stack([np.stack([np.convolve(u64[b, :, c], h64[:, c])[:L] for c in range(5)], -1)
                   for b in range(2)])
  want = want + u64 * np.asarray(skip, np.float64)
  tol = 1e-4 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(np.asarray(y, np.float64), want, rtol=tol, atol=tol)
  np.testing.assert_allclose(np.asarray(ops.direct_causal_conv(u, h, skip), np.float64), want,
                             rtol=tol, atol=tol)


@pytest.mark.parametrize('fft_size', [2 * 33 - 1, 3 * 33, 128])
def test_fftconv_any_fft_size_at_least_2L_minus_1(fft_size):
  u, h = _rand(0, (1, 33, 3)), _rand(1, (33, 3))
  chex.assert_trees_all_close(ops.fftconv(u, h, fft_size=fft_size), ops.direct_causal_conv(u, h),
                              atol=1e-4)


def test_fftconv_rejects_wrapping_fft_size():
  with pytest.raises(ValueError, match='fft_size'):
    ops.fftconv(_rand(0, (1, 16, 2)), _rand(1, (16, 2)), fft_size=16)


def test_fftconv_computes_in_float32_for_bf16_inputs():
  # A bf16 FFT would lose the small tail taps; the float32 path keeps them to bf16 output accuracy.
  L = 512
  u = jnp.ones((1, L, 1), jnp.bfloat16)
  h = jnp.full((L, 1), 1e-3, jnp.float32)
  y = ops.fftconv(u, h)
  np.testing.assert_allclose(np.asarray(y[0, :, 0], np.float32), 1e-3 * np.arange(1, L + 1),
                             rtol=1e-2)


def test_causal_depthwise_conv_matches_loop_and_is_causal():
  x = np.asarray(_rand(0, (2, 9, 4)))
  w = np.asarray(_rand(1, (3, 4)))
  b = np.asarray(_rand(2, (4,)))
  y = np.asarray(ops.causal_depthwise_conv(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)))
  want = np.zeros_like(x) + b
  for t in range(9):
    for k in range(3):
      s = t - 2 + k  # w[K-1] multiplies x_t (PyTorch cross-correlation order).
      if s >= 0:
        want[:, t] += w[k] * x[:, s]
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_positional_features():
  z, t = ops.positional_features(l_max=10, emb_dim=5)
  chex.assert_shape(z, (10, 5))
  chex.assert_shape(t, (10, 1))
  assert t[0, 0] == 0.0 and t[-1, 0] == pytest.approx(1.0)
  np.testing.assert_allclose(z[:, 0], t[:, 0])
  # Bands f = linspace(1e-4, 1, 2); w_n = 2 pi n / 10; z = [t, cos(fw), -sin(fw)].
  w = 2 * np.pi * np.arange(10) / 10
  np.testing.assert_allclose(z[:, 2], np.cos(1.0 * w), atol=1e-6)
  np.testing.assert_allclose(z[:, 4], -np.sin(1.0 * w), atol=1e-6)
  np.testing.assert_allclose(z[:, 1], np.cos(1e-4 * w), atol=1e-6)


@pytest.mark.parametrize('emb_dim', [2, 4, 1])
def test_positional_features_rejects_bad_emb_dim(emb_dim):
  with pytest.raises(ValueError, match='emb_dim'):
    ops.positional_features(8, emb_dim)


def test_decay_window_values_at_t0_and_t1():
  C = 6
  decay = ops.decay_rates(C)  # Defaults: target 1e-2, fast 0.3, slow 1.5.
  np.testing.assert_allclose(decay[0], math.log(100) / 1.5, rtol=1e-6)
  np.testing.assert_allclose(decay[-1], math.log(100) / 0.3, rtol=1e-6)
  h = jnp.ones((2, C))
  t = jnp.asarray([[0.0], [1.0]])
  out = np.asarray(ops.modulate(h, t, decay))
  np.testing.assert_allclose(out[0], 1.0)  # Window is 1 at t=0.
  np.testing.assert_allclose(out[1], np.exp(-decay), rtol=1e-6)
  # The fastest channel reaches the 1e-2 target at 30% of l_max.
  np.testing.assert_allclose(float(ops.modulate(h, jnp.asarray([[0.3]]), decay)[0, -1]), 1e-2,
                             rtol=1e-5)
  np.testing.assert_allclose(np.asarray(ops.modulate(h, t, decay, shift=0.5))[0], 1.5)


def test_dropout_is_identity_without_key_and_scales_with_key():
  x = jnp.ones((1000,))
  chex.assert_trees_all_equal(ops.dropout(x, 0.5, None), x)
  y = ops.dropout(x, 0.5, jax.random.PRNGKey(0))
  assert set(np.unique(np.asarray(y))) <= {0.0, 2.0}
  assert 0.4 < float((y == 0).mean()) < 0.6
