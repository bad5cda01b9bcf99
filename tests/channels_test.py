"""hyena_jax.ops.channels: the channels-first fast path equals the (B, L, D) reference."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hyena_jax import checkpoint, config_lib, ops
from hyena_jax.models import HyenaOperator


def _op(impl, order=2, L=37, D=8, dtype='float32', fft_size=None):
  c = config_lib.base_config().model
  c.update(d_model=D, l_max=L, dtype=dtype)
  c.hyena.update(order=order, filter_order=8, emb_dim=5, impl=impl, fft_size=fft_size)
  return HyenaOperator(D, c, rngs=nnx.Rngs(0))


def _value_and_grads(op, u_BxLxD, w_BxLxD):
  graphdef, params, rest = nnx.split(op, nnx.Param, ...)

  def loss(p, u):
    y = nnx.merge(graphdef, p, rest)(u)
    return jnp.sum(y.astype(jnp.float32) * w_BxLxD), y

  (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, u_BxLxD)
  return y, grads


# B=20 >= L/2 takes the Toeplitz path (ops.channels.use_direct); the others the FFT custom VJP.
@pytest.mark.parametrize('order,B,fft_size', [(2, 1, None), (2, 3, None), (3, 2, 80), (2, 20, None)])
def test_channels_first_equals_reference_values_and_gradients(order, B, fft_size):
  L, D = 37, 8
  u = jax.random.normal(jax.random.key(1), (B, L, D))
  w = jax.random.normal(jax.random.key(2), (B, L, D))
  y_ref, g_ref = _value_and_grads(_op('reference', order, fft_size=fft_size), u, w)
  y_cf, g_cf = _value_and_grads(_op('channels_first', order, fft_size=fft_size), u, w)
  chex.assert_trees_all_close(y_cf, y_ref, atol=1e-5, rtol=1e-5)
  # Every parameter's gradient and the input's: the hand-written projection VJPs included.
  chex.assert_trees_all_close(g_cf, g_ref, atol=1e-5, rtol=1e-4)
  assert float(jnp.abs(g_ref[1]).max()) > 0


def test_channels_first_bfloat16_keeps_dtype_and_matches_reference():
  u = jax.random.normal(jax.random.key(1), (2, 32, 8)).astype(jnp.bfloat16)
  w = jax.random.normal(jax.random.key(2), (2, 32, 8))
  y_ref, g_ref = _value_and_grads(_op('reference', L=32, dtype='bfloat16'), u, w)
  y_cf, g_cf = _value_and_grads(_op('channels_first', L=32, dtype='bfloat16'), u, w)
  assert y_cf.dtype == jnp.bfloat16 and g_cf[1].dtype == jnp.bfloat16
  assert jax.tree.map(lambda a: a.dtype, g_cf[0]) == jax.tree.map(lambda a: a.dtype, g_ref[0])
  scale = float(jnp.abs(y_ref.astype(jnp.float32)).max())
  np.testing.assert_allclose(np.asarray(y_cf, np.float32), np.asarray(y_ref, np.float32),
                             atol=0.03 * scale)


def test_projection_vjps_match_autodiff_of_the_plain_einsum():
  u = jax.random.normal(jax.random.key(0), (2, 5, 3))
  w_in, b_in = jax.random.normal(jax.random.key(1), (3, 4)), jnp.arange(4.0)
  y = jax.random.normal(jax.random.key(2), (4, 2, 5))
  w_out, b_out = jax.random.normal(jax.random.key(3), (4, 6)), jnp.arange(6.0)
  plain_to = lambda u, w, b: jnp.einsum('bld,dc->cbl', u, w) + b[:, None, None]
  plain_from = lambda y, w, b: jnp.einsum('cbl,ce->ble', y, w) + b[None, None]
  for fast, plain, args in ((ops.channels.dense_to_channels, plain_to, (u, w_in, b_in)),
                            (ops.channels.dense_from_channels, plain_from, (y, w_out, b_out))):
    chex.assert_trees_all_close(fast(*args), plain(*args), atol=1e-5)
    ct = jax.random.normal(jax.random.key(4), plain(*args).shape)
    vjp = lambda f: jax.vjp(f, *args)[1](ct)
    chex.assert_trees_all_close(vjp(fast), vjp(plain), atol=1e-5)

  # Grouped: the same channels as two arrays, gradients taken group by group.
  grouped = lambda u, w, b: jnp.concatenate(ops.channels.dense_to_channels(u, w, b, 2))
  chex.assert_trees_all_close(grouped(u, w_in, b_in), plain_to(u, w_in, b_in), atol=1e-5)
  ct = jax.random.normal(jax.random.key(5), (4, 2, 5))
  vjp = lambda f: jax.vjp(f, u, w_in, b_in)[1](ct)
  chex.assert_trees_all_close(vjp(grouped), vjp(plain_to), atol=1e-5)


@pytest.mark.parametrize('fft_size,direct', [(None, True), (None, None), (31, None)])
def test_channels_first_conv_ops_and_their_vjps_equal_the_batch_major_ones(fft_size, direct):
  # B=2, L=11: fft_size=None picks FFTs of 22; direct=True is the Toeplitz path.
  x = jax.random.normal(jax.random.key(0), (2, 11, 3))
  w, b = jax.random.normal(jax.random.key(1), (3, 3)), jnp.arange(3.0)
  h, skip = jax.random.normal(jax.random.key(2), (11, 3)), jnp.linspace(0.5, 1.5, 3)
  to_cf = lambda a: jnp.transpose(a, (2, 0, 1))
  ct = jax.random.normal(jax.random.key(3), (3, 2, 11))
  pairs = (
      (lambda x, w, b: ops.channels.causal_depthwise_conv_cf(to_cf(x), w, b),
       lambda x, w, b: to_cf(ops.causal_depthwise_conv(x, w, b)), (x, w, b)),
      (lambda x, h, s: ops.channels.fftconv_cf(to_cf(x), h.T, s, fft_size, direct=direct),
       lambda x, h, s: to_cf(ops.fftconv(x, h, s)), (x, h, skip)))
  for fast, plain, args in pairs:
    chex.assert_trees_all_close(fast(*args), plain(*args), atol=1e-5)
    vjp = lambda f: jax.vjp(f, *args)[1](ct)
    chex.assert_trees_all_close(vjp(fast), vjp(plain), atol=1e-4)
  with pytest.raises(ValueError, match='wrap'):
    ops.channels.fftconv_cf(to_cf(x), h.T, fft_size=16)


def test_fftconv_vjp_keeps_dtypes_and_has_second_derivatives():
  u = jax.random.normal(jax.random.key(0), (4, 1, 200)).astype(jnp.bfloat16)
  h, skip = jax.random.normal(jax.random.key(1), (4, 200)), jnp.ones(4)
  y, vjp = jax.vjp(ops.channels.fftconv_cf, u, h, skip)
  du, dh, ds = vjp(jnp.ones_like(y))
  assert (y.dtype, du.dtype, dh.dtype, ds.dtype) == (jnp.bfloat16, jnp.bfloat16, jnp.float32,
                                                      jnp.float32)
  # The L2T meta-gradient differentiates a gradient: reverse over the custom VJP.
  u32 = u.astype(jnp.float32)
  inner = lambda h, f: jnp.sum(jax.grad(lambda u: jnp.sum(f(u, h, skip) ** 2))(u32) ** 2)
  chex.assert_trees_all_close(jax.grad(inner)(h, ops.channels.fftconv_cf),
                              jax.grad(inner)(h, _plain_cf_conv), rtol=1e-3, atol=1e-3)


def _plain_cf_conv(u_CxBxL, h_CxL, skip_C):
  to_bl = lambda a: jnp.transpose(a, (1, 2, 0))
  return jnp.transpose(ops.fftconv(to_bl(u_CxBxL), h_CxL.T, skip_C), (2, 0, 1))


@pytest.mark.parametrize('modulate,shift,learn_pos_emb', [(True, 0.0, False), (True, 0.3, True),
                                                           (False, 0.0, False)])
def test_filter_channels_first_equals_the_transposed_filter(modulate, shift, learn_pos_emb):
  from hyena_jax.models.hyena import HyenaFilter  # pylint: disable=g-import-not-at-top
  f = HyenaFilter(6, l_max=300, emb_dim=5, filter_order=8, modulate=modulate, shift=shift,
                  learn_pos_emb=learn_pos_emb, rngs=nnx.Rngs(0))
  g, p = nnx.split(f, nnx.Param)
  w = jax.random.normal(jax.random.key(1), (6, 257))
  for L in (1, 257, 300):
    chex.assert_trees_all_close(f.channels_first(L), f(L).T, rtol=1e-5, atol=1e-6)
  grad = lambda fn: jax.grad(lambda p: jnp.sum(fn(nnx.merge(g, p)) * w))(p)
  chex.assert_trees_all_close(grad(lambda m: m.channels_first(257)), grad(lambda m: m(257).T),
                              rtol=1e-4, atol=1e-5)


def test_bad_impl_is_refused_at_construction():
  with pytest.raises(ValueError, match='model.hyena.impl='):
    _op('fused')


def test_resume_ignores_implementation_fields_but_not_the_model(tmp_path):
  c = config_lib.base_config()
  ckpt = checkpoint.Checkpointer(str(tmp_path), c)
  ckpt.latest_step = lambda: 1  # As if a checkpoint had been written.
  c2 = config_lib.base_config()
  c2.model.hyena.impl, c2.model.attention.impl = 'reference', 'xla'
  ckpt._check_config(c2, write=False)  # pylint: disable=protected-access
  c2.model.hyena.order = 3
  with pytest.raises(config_lib.ConfigError, match='model.hyena='):
    ckpt._check_config(c2, write=False)  # pylint: disable=protected-access
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['model']['hyena']['impl'] == 'channels_first'


def test_direct_choice_depends_on_batch_and_length():
  assert ops.channels.use_direct(128, 64) and ops.channels.use_direct(64, 128)
  assert not ops.channels.use_direct(1, 64) and not ops.channels.use_direct(32, 128)
  assert not ops.channels.use_direct(1024, ops.channels.DIRECT_MAX_LEN + 1)


@pytest.mark.parametrize('L', [1, 2, 5, 16])
def test_toeplitz_matches_its_definition_and_both_conv_paths_agree(L):
  h = jax.random.normal(jax.random.key(0), (3, L))
  t = np.arange(L)
  lag = t[None, :] - t[:, None]
  want = np.where(lag >= 0, np.asarray(h)[:, np.clip(lag, 0, None)], 0)
  np.testing.assert_array_equal(ops.channels.toeplitz_cf(h), want)
  u = jax.random.normal(jax.random.key(1), (3, 2, L))
  direct = ops.channels.fftconv_cf(u, h, direct=True)
  fft = ops.channels.fftconv_cf(u, h, direct=False)
  np.testing.assert_allclose(direct, fft, atol=1e-5)
  gd = jax.grad(lambda h: jnp.sum(ops.channels.fftconv_cf(u, h, direct=True) ** 2))(h)
  gf = jax.grad(lambda h: jnp.sum(ops.channels.fftconv_cf(u, h, direct=False) ** 2))(h)
  np.testing.assert_allclose(gd, gf, atol=1e-4)


def test_logits_from_table_and_plain_transpose_vjps_match_autodiff():
  x = jax.random.normal(jax.random.key(0), (2, 5, 3))
  table = jax.random.normal(jax.random.key(1), (7, 3))
  plain = lambda x, t: jnp.einsum('bld,vd->blv', x, t)
  chex.assert_trees_all_close(ops.channels.logits_from_table(x, table), plain(x, table),
                              atol=1e-5)
  ct = jax.random.normal(jax.random.key(2), (2, 5, 7))
  vjp = lambda f: jax.vjp(f, x, table)[1](ct)
  chex.assert_trees_all_close(vjp(ops.channels.logits_from_table), vjp(plain), atol=1e-5)
  perm = (2, 0, 1)
  y, back = jax.vjp(lambda a: ops.channels.transpose_plain(a, perm), x)
  np.testing.assert_array_equal(y, jnp.transpose(x, perm))
  np.testing.assert_array_equal(back(y)[0], x)
