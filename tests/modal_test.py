"""Modal distillation (hyena_jax.ops.modal): exact recovery, fits of real Hyena filters, and the
recurrence against the convolution it replaces.

Every fit uses C = 16 channels and L = 128, so the jitted refinement compiles once per order.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hyena_jax import ops
from hyena_jax.models.hyena import HyenaFilter
from hyena_jax.ops import modal

L, C = 128, 16


def damped_modes(seed: int, N: int) -> tuple[np.ndarray, np.ndarray]:
  """Per channel, N well separated poles (mode 0 real) and random complex residues, float64."""
  rng = np.random.default_rng(seed)
  radius = rng.uniform(0.85, 0.98, (C, N))
  theta = np.linspace(0.0, 2.8, N)[None] + rng.uniform(0.0, 0.2, (C, N)) * (np.arange(N) > 0)
  residues = rng.normal(size=(C, N)) + 1j * rng.normal(size=(C, N))
  return radius * np.exp(1j * theta), residues


def exact_filter(poles, residues):
  t = np.arange(L)[:, None, None]
  return np.real(np.sum(residues[None] * poles[None] ** t, -1))  # LxC


@functools.lru_cache(maxsize=None)
def hyena_filter(emb_dim: int) -> np.ndarray:
  """A freshly initialised HyenaFilter's taps, as HyenaOperator builds it (w = 1)."""
  return np.asarray(HyenaFilter(C, l_max=L, emb_dim=emb_dim, rngs=nnx.Rngs(0))(L))


@functools.lru_cache(maxsize=None)
def fit_hyena(emb_dim: int, order: int):
  return modal.fit_modal(hyena_filter(emb_dim), order)


def assert_stable(poles):
  assert poles.dtype == jnp.complex64
  assert float(jnp.max(jnp.abs(poles))) < 1.0


def upper(poles):
  """Re(R lambda^t) is unchanged by (lambda, R) -> conj: compare poles in the upper half."""
  p = np.asarray(poles, np.complex128)
  p = np.where(p.imag < 0, p.conj(), p)
  return np.sort_complex(p)  # sorts by real part: the true radii/angles are well separated


def test_exact_sum_of_damped_exponentials_is_recovered():
  N = 4
  true_poles, true_res = damped_modes(0, N)
  h = exact_filter(true_poles, true_res)
  poles, residues, info = modal.fit_modal(h, N)
  chex.assert_shape([poles, residues], (C, N))
  chex.assert_shape(info['rel_err'], (C,))
  assert_stable(poles)
  assert info['max_rel_err'] < 1e-4, info['rel_err']  # measured 2.8e-6 (float32 floor)
  np.testing.assert_allclose(upper(poles), upper(true_poles), atol=1e-4)
  np.testing.assert_allclose(np.asarray(modal.modal_filter(poles, residues, L)), h,
                             atol=1e-4 * np.abs(h).max())


def test_too_low_order_is_a_poor_fit():
  """Negative control: one mode cannot represent four."""
  h = exact_filter(*damped_modes(0, 4))
  _, _, info = modal.fit_modal(h, 1)
  assert float(jnp.min(info['rel_err'])) > 0.1, info['rel_err']  # measured min 0.32


@pytest.mark.parametrize('emb_dim,orders,bound', [
    (3, (1, 2), 1e-4),      # smooth: measured mean 2.1e-5 -> 7.7e-7, max(order 2) 2.7e-6
    (33, (4, 8, 16), 5e-3),  # measured mean 5.4e-2 -> 5.8e-3 -> 2.2e-4, max(order 16) 1.5e-3
])
def test_hyena_filter_error_falls_with_order(emb_dim, orders, bound):
  h = hyena_filter(emb_dim)
  mean_err, max_err = [], []
  for order in orders:
    poles, residues, info = fit_hyena(emb_dim, order)
    assert_stable(poles)
    # info reports the float32 error of exactly what modal_filter returns.
    np.testing.assert_allclose(info['rel_err'], modal.relative_error(h, poles, residues))
    # Refinement only ever lowers the error (slack: info is float32, whose floor is ~1e-6).
    assert np.all(np.asarray(info['rel_err']) <= info['init_rel_err'] * 1.01 + 5e-6)
    mean_err.append(info['mean_rel_err'])
    max_err.append(info['max_rel_err'])
  for lo, hi in zip(mean_err[1:], mean_err[:-1]):
    assert lo < hi / 5, mean_err
  assert max_err[-1] < bound, max_err


def test_fit_hyena_filter_raises_order_until_tolerance():
  poles, _, info = modal.fit_hyena_filter(hyena_filter(33), 4, tol=0.05)
  assert info['order'] == 8 and info['max_rel_err'] <= 0.05  # order 4: 0.26, order 8: 0.03
  chex.assert_shape(poles, (C, 8))


def test_growing_and_zero_channels_stay_stable_and_finite():
  """A filter that grows over the window (ERA would give |lambda| > 1) and an all-zero one."""
  t = np.arange(L)[:, None]
  rate = np.linspace(1.0, 1.02, C)[None]
  h = rate ** t * np.cos(0.3 * t + np.arange(C)[None])
  h[:, 0] = 0.0
  poles, residues, info = modal.fit_modal(h, 4)
  assert_stable(poles)
  assert np.all(np.isfinite(np.asarray(residues)))
  assert float(info['rel_err'][0]) == 0.0
  assert info['max_rel_err'] < 0.2, info['rel_err']  # measured 0.09 (rate 1.003)


def random_modal(seed, N, B=2, T=32):
  ks = jax.random.split(jax.random.PRNGKey(seed), 5)
  radius = jax.random.uniform(ks[0], (C, N), minval=0.5, maxval=0.99)
  poles = (radius * jnp.exp(1j * jax.random.uniform(ks[1], (C, N), maxval=np.pi))
           ).astype(jnp.complex64)
  residues = jax.lax.complex(jax.random.normal(ks[2], (C, N)), jax.random.normal(ks[3], (C, N)))
  u = jax.random.normal(ks[4], (B, T, C))
  return poles, residues, u


@pytest.mark.parametrize('associative', [False, True])
def test_scan_equals_causal_conv_and_steps(associative):
  poles, residues, u = random_modal(0, 5)
  T = u.shape[1]
  y, final = modal.modal_scan(u, poles, residues, associative=associative)
  chex.assert_shape(y, u.shape)
  chex.assert_shape(final, (2, C, 5))
  assert y.dtype == jnp.float32 and final.dtype == jnp.complex64
  h = modal.modal_filter(poles, residues, T)
  scale = float(jnp.max(jnp.abs(y)))
  tol = dict(atol=1e-5 * scale, rtol=1e-5)
  np.testing.assert_allclose(y, ops.direct_causal_conv(u, h), **tol)
  np.testing.assert_allclose(y, ops.fftconv(u, h), atol=1e-4 * scale)
  state, ys, step = modal.modal_init_state(2, C, 5), [], jax.jit(modal.modal_step)
  for t in range(T):
    y_t, state = step(state, u[:, t], poles, residues)
    ys.append(y_t)
  np.testing.assert_allclose(y, jnp.stack(ys, 1), **tol)
  np.testing.assert_allclose(final, state, atol=1e-5 * float(jnp.max(jnp.abs(state))))


@pytest.mark.parametrize('associative', [False, True])
def test_scan_in_two_parts_with_carried_state(associative):
  poles, residues, u = random_modal(1, 3)
  y, final = modal.modal_scan(u, poles, residues)
  y1, s1 = modal.modal_scan(u[:, :17], poles, residues)
  y2, s2 = modal.modal_scan(u[:, 17:], poles, residues, s1, associative=associative)
  scale = float(jnp.max(jnp.abs(y)))
  np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y, atol=1e-5 * scale)
  np.testing.assert_allclose(s2, final, atol=1e-5 * float(jnp.max(jnp.abs(final))))


def test_fitted_filter_runs_as_recurrence():
  """End to end: a fitted Hyena filter's recurrence is the convolution with its modal filter
  and close to the convolution with the original filter."""
  h = hyena_filter(33)
  poles, residues, info = fit_hyena(33, 16)
  u = jax.random.normal(jax.random.PRNGKey(2), (1, L, C))
  y, _ = modal.modal_scan(u, poles, residues)
  want = ops.direct_causal_conv(u, modal.modal_filter(poles, residues, L))
  np.testing.assert_allclose(y, want, atol=1e-5 * float(jnp.max(jnp.abs(want))))
  ref = ops.direct_causal_conv(u, jnp.asarray(h))
  rel = float(jnp.linalg.norm(y - ref) / jnp.linalg.norm(ref))
  assert rel < 5 * info['max_rel_err'], (rel, info['max_rel_err'])
