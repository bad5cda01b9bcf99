"""Longhorn: every scan against a float64 NumPy loop, gradients, state splits, segments, decode."""

import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from hyena_jax import config_lib
from hyena_jax.models import LM
from hyena_jax.models.longhorn import LonghornMixer
from hyena_jax.ops import longhorn as lh

IMPLS = list(lh.Scan)


def oracle(x, k, q, eps, S0=None, reset=None):
  """The recurrence as written in the paper, one token at a time, in float64."""
  x, k, q, eps = (np.asarray(a, np.float64) for a in (x, k, q, eps))
  B, L, D = x.shape
  S = np.zeros((B, D, k.shape[-1])) if S0 is None else np.asarray(S0, np.float64)
  ys = []
  for t in range(L):
    if reset is not None:
      S = S * (1.0 - np.asarray(reset[:, t], np.float64))[:, None, None]
    a = 1.0 - eps[:, t, :, None] * k[:, t, None, :]**2
    S = a * S + (eps[:, t] * x[:, t])[:, :, None] * k[:, t, None, :]
    ys.append(np.einsum('bdn,bn->bd', S, q[:, t]))
  return np.stack(ys, 1), S


def inputs(B=2, L=29, D=5, N=3, seed=0, dtype=jnp.float32):
  ks = jax.random.split(jax.random.PRNGKey(seed), 5)
  x, k, q, r = (jax.random.normal(kk, s, dtype) for kk, s in
                zip(ks, [(B, L, D), (B, L, N), (B, L, N), (B, L, D)]))
  S0 = jax.random.normal(ks[4], (B, D, N), dtype)
  return x, k, q, r, S0


@pytest.mark.parametrize('impl', IMPLS, ids=lambda s: s.value)
@pytest.mark.parametrize('with_state', [False, True])
def test_every_scan_matches_float64_loop(impl, with_state):
  x, k, q, r, S0 = inputs()
  S0 = S0 if with_state else None
  eps = lh.step_size(r, k)
  reset = jax.random.bernoulli(jax.random.PRNGKey(7), 0.2, x.shape[:2])
  for rs in (None, reset):
    y_ref, S_ref = oracle(x, k, q, eps, S0, rs)
    # chunk 8 does not divide L = 29: the padded tail must leave the final state alone.
    y, S = lh.scan(x, k, q, eps, S0, reset_BxL=rs, impl=impl, chunk=8)
    assert y.dtype == S.dtype == jnp.float32
    np.testing.assert_allclose(y, y_ref, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(S, S_ref, atol=2e-5, rtol=1e-5)


def test_half_precision_inputs_keep_a_float32_state():
  x, k, q, r, _ = inputs(dtype=jnp.bfloat16)
  y, S = lh.scan(x, k, q, lh.step_size(r, k), impl='sequential')
  assert y.dtype == S.dtype == jnp.float32
  y_ref, _ = oracle(x.astype(jnp.float32), k.astype(jnp.float32), q.astype(jnp.float32),
                    lh.step_size(r, k))
  np.testing.assert_allclose(y, y_ref, atol=1e-4, rtol=1e-4)


def test_step_size_identity_and_forget_gate_range():
  r = jnp.array([-100.0, -20.0, -1.0, 0.0, 3.0, 100.0])[None, :, None]
  for scale in (1e-3, 1.0, 30.0, 1e3):
    k = scale * jax.random.normal(jax.random.PRNGKey(1), (1, 6, 16))
    k = k.at[0, 2].set(0.0).at[0, 3].set(jnp.zeros(16).at[0].set(scale))  # zero / one-hot keys
    eps = lh.step_size(r, k)
    k2 = np.sum(np.asarray(k, np.float64)**2, -1, keepdims=True)
    want = 1.0 / (1.0 + np.exp(-np.asarray(r, np.float64)) + k2)
    np.testing.assert_allclose(eps, want, rtol=1e-5, atol=1e-38)
    a = lh.forget_gate(eps, k)
    assert bool(jnp.all(a > 0)) and bool(jnp.all(a <= 1)), (scale, float(a.min()))


def test_step_size_gradients_are_finite_at_extreme_logits():
  k = jax.random.normal(jax.random.PRNGKey(2), (1, 2, 4))
  for r0 in (-100.0, 100.0):
    g_r, g_k = jax.grad(lambda r, k: lh.step_size(r, k).sum(), (0, 1))(jnp.full((1, 2, 3), r0), k)
    assert bool(jnp.all(jnp.isfinite(g_r))) and bool(jnp.all(jnp.isfinite(g_k))), r0


@pytest.mark.parametrize('impl', IMPLS, ids=lambda s: s.value)
def test_gradients_match_finite_differences(impl):
  with jax.enable_x64(True):
    x, k, q, r, S0 = inputs(B=1, L=7, D=2, N=2, dtype=jnp.float64)
    reset = jnp.zeros((1, 7), bool).at[0, 4].set(True)

    def f(x, k, q, r, S0):
      # The scan computes in float32 by design; promote back so FD sees a float64 function.
      y, S = lh.scan(x, k, q, lh.step_size(r, k), S0, reset_BxL=reset, impl=impl, chunk=3)
      return jnp.sum(jnp.sin(y)) + jnp.sum(S**2)

    check_grads(f, (x, k, q, r, S0), order=1, modes=['rev'], atol=5e-3, rtol=5e-3, eps=1e-3)


def test_sequential_and_associative_gradients_agree():
  x, k, q, r, S0 = inputs(L=20)
  grads = {}
  for impl in IMPLS:
    loss = lambda *a, impl=impl: jnp.sum(jnp.tanh(lh.scan(
        a[0], a[1], a[2], lh.step_size(a[3], a[1]), a[4], impl=impl, chunk=8)[0]))
    grads[impl] = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, k, q, r, S0)
  for impl in IMPLS[1:]:
    chex.assert_trees_all_close(grads[impl], grads[IMPLS[0]], atol=1e-4, rtol=1e-4)


def assert_close(a, b, rel=1e-5):
  """Relative to the output scale: mixer outputs start small (out_proj std 0.02)."""
  scale = float(jnp.abs(b).max())
  assert scale > 0 and float(jnp.abs(a - b).max()) <= rel * scale, (
      float(jnp.abs(a - b).max()), scale)


def mixer_cfg(scan='sequential', dtype='float32'):
  c = config_lib.base_config().model
  c.mixer, c.dtype = 'longhorn', dtype
  c.longhorn.update(scan=scan, chunk=4)
  return c


@pytest.mark.parametrize('impl', ['sequential', 'chunked'])
def test_mixer_state_split_and_token_by_token_decode_equal_full_forward(impl):
  d, L = 16, 11
  mixer = LonghornMixer(d, mixer_cfg(impl), rngs=nnx.Rngs(0))
  u = jax.random.normal(jax.random.PRNGKey(3), (2, L, d))
  y_full = mixer(u)
  for t in (2, 5):  # splits shorter and longer than the conv's K - 1 = 3 cached inputs
    y1, s = mixer(u[:, :t], mixer.init_state(2))
    y2, s = mixer(u[:, t:], s)
    assert_close(jnp.concatenate([y1, y2], 1), y_full)
  step = jax.jit(lambda u_t, s: mixer(u_t, s))
  s, ys = mixer.init_state(2), []
  for t in range(L):
    y_t, s = step(u[:, t:t + 1], s)
    ys.append(y_t)
  assert_close(jnp.concatenate(ys, 1), y_full)
  y_all, s_all = mixer(u, mixer.init_state(2))
  for name in s:
    assert_close(s[name], s_all[name])


def test_mixer_segment_resets_equal_separate_runs():
  d = 8
  mixer = LonghornMixer(d, mixer_cfg(), rngs=nnx.Rngs(1))
  u = jax.random.normal(jax.random.PRNGKey(4), (1, 13, d))
  seg = jnp.array([[0] * 5 + [1] * 2 + [2] * 6])
  y = mixer(u, segment_ids=seg)
  parts = [mixer(u[:, a:b]) for a, b in ((0, 5), (5, 7), (7, 13))]
  assert_close(y, jnp.concatenate(parts, 1))
  # Without the ids the second segment does see the first (the test can fail).
  assert float(jnp.abs(mixer(u)[:, 5:] - y[:, 5:]).max()) > 0.05 * float(jnp.abs(y).max())


def test_mixer_parameters_and_initial_step_size():
  d = 32
  c = mixer_cfg()
  mixer = LonghornMixer(d, c, rngs=nnx.Rngs(0))
  Di, N, R, K = 2 * d, 16, math.ceil(d / 16), 4
  want = d * 2 * Di + K * Di + Di + Di * (R + 2 * N) + R * Di + Di + Di + Di * d
  got = sum(p.size for p in jax.tree.leaves(nnx.state(mixer, nnx.Param)))
  assert got == want, (got, want)
  np.testing.assert_array_equal(mixer.dt_head.bias[...], 0.0)  # beta starts at sigmoid(0)
  np.testing.assert_array_equal(mixer.D[...], 1.0)


def test_mixer_bfloat16_runs_and_stays_close():
  d = 16
  u = jax.random.normal(jax.random.PRNGKey(5), (2, 9, d))
  y32 = LonghornMixer(d, mixer_cfg(), rngs=nnx.Rngs(0))(u)
  m16 = LonghornMixer(d, mixer_cfg(dtype='bfloat16'), rngs=nnx.Rngs(0))
  y16, s = m16(u.astype(jnp.bfloat16), m16.init_state(2))
  assert y16.dtype == jnp.bfloat16 and s['ssm'].dtype == jnp.float32
  assert_close(y16.astype(jnp.float32), y32, rel=5e-2)


def test_longhorn_lm_is_causal_and_trains_a_step():
  c = config_lib.base_config()
  c.data.update(seq_len=12, vocab_size=19)
  c.model.update(mixer='longhorn', d_model=16, n_layer=2, d_inner=0)
  config_lib.validate(c)
  graphdef, params = nnx.split(LM(c.model, rngs=nnx.Rngs(0)), nnx.Param)
  forward = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))
  tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 12), 0, 20)
  logits = forward(params, tokens)
  t2 = tokens.at[:, 7].set((tokens[:, 7] + 1) % 20)
  diff = jnp.abs(forward(params, t2) - logits).max(axis=(0, 2))
  assert float(diff[:7].max()) == 0.0 and float(diff[7:].max()) > 0.0
  grads = jax.jit(jax.grad(lambda p: forward(p, tokens).mean()))(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_bad_longhorn_config_is_one_line_error():
  c = config_lib.base_config()
  c.model.mixer = 'longhorn'
  c.model.longhorn.scan = 'pallas'
  with pytest.raises(config_lib.ConfigError, match='model.longhorn.scan'):
    config_lib.validate(c)
