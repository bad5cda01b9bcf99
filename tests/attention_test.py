"""Causal softmax attention: ops against float64 numpy oracles, the mixer, and the LM with it."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from models_test import future_leak, lm_embed_to_logits
from hyena_jax import config_lib, ops
from hyena_jax.models import LM, CausalSelfAttention, padded_vocab


def _rand(seed, shape, dtype=jnp.float32):
  return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32).astype(dtype)


def np_attention(q, k, v):
  """float64 causal softmax attention, (B, L, H, K) in and out."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  L, K = q.shape[1], q.shape[-1]
  s = np.einsum('bthk,bshk->bhts', q, k) / math.sqrt(K)
  s = np.where(np.tril(np.ones((L, L), bool)), s, -np.inf)
  p = np.exp(s - s.max(axis=-1, keepdims=True))
  p /= p.sum(axis=-1, keepdims=True)
  return np.einsum('bhts,bshk->bthk', p, v)


def np_rotary(x, rotary_dims, base=10000.0):
  """GPT-NeoX apply_rotary_pos_emb: cos/sin over cat(freqs, freqs) and rotate_half."""
  x = np.asarray(x, np.float64)
  L = x.shape[1]
  inv_freq = 1.0 / base**(np.arange(0, rotary_dims, 2) / rotary_dims)
  emb = np.concatenate([np.outer(np.arange(L), inv_freq)] * 2, axis=-1)[None, :, None, :]
  rot, rest = x[..., :rotary_dims], x[..., rotary_dims:]
  x1, x2 = np.split(rot, 2, axis=-1)
  rotated = rot * np.cos(emb) + np.concatenate([-x2, x1], axis=-1) * np.sin(emb)
  return np.concatenate([rotated, rest], axis=-1)


@pytest.mark.parametrize('L', [1, 7, 16])
def test_causal_attention_matches_float64_oracle(L):
  q, k, v = (_rand(i, (2, L, 3, 8)) for i in range(3))
  y = ops.causal_attention(q, k, v)
  chex.assert_shape(y, (2, L, 3, 8))
  np.testing.assert_allclose(np.asarray(y), np_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_causal_attention_bf16_softmax_in_float32():
  # Large logits: a bf16 softmax would saturate; float32 stays near the oracle.
  q, k, v = (_rand(i, (1, 12, 2, 16), jnp.bfloat16) for i in range(3))
  q = q * 4
  y = ops.causal_attention(q, k, v)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), np_attention(q, k, v), atol=3e-2)


def test_causal_attention_ignores_the_future():
  q, k, v = (_rand(i, (1, 10, 2, 4)) for i in range(3))
  y = ops.causal_attention(q, k, v)
  # Rewrite positions 6.. of k and v: outputs 0..5 must not move.
  k2, v2 = k.at[:, 6:].set(100.0), v.at[:, 6:].set(-100.0)
  chex.assert_trees_all_close(ops.causal_attention(q, k2, v2)[:, :6], y[:, :6], atol=1e-6)


def _weighted_sum_grads(attention, q, k, v):
  """d/d(q, k, v) of a random-weighted sum of the output: a full, generic cotangent."""
  w = _rand(9, q.shape)
  loss = lambda q, k, v: jnp.sum(w * attention(q, k, v).astype(jnp.float32))
  return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)


# L a multiple of the blocks, not one, below one block, a single token, evened-out blocks
# (130 runs as two of 80); unequal blocks both ways.
@pytest.mark.parametrize('L,block_q,block_k', [
    (32, 8, 8), (19, 8, 8), (5, 8, 8), (1, 8, 8), (130, 128, 128), (37, 16, 8), (37, 8, 16)])
def test_blockwise_forward_and_gradients_match_the_reference(L, block_q, block_k):
  q, k, v = (_rand(i, (2, L, 3, 8)) for i in range(3))
  blockwise = jax.jit(lambda q, k, v: ops.blockwise_causal_attention(
      q, k, v, block_q=block_q, block_k=block_k))
  y = blockwise(q, k, v)
  assert y.dtype == jnp.float32
  np.testing.assert_allclose(y, ops.causal_attention(q, k, v), rtol=1e-5, atol=1e-6)
  got = _weighted_sum_grads(blockwise, q, k, v)
  want = _weighted_sum_grads(ops.causal_attention, q, k, v)
  for name, g, r in zip('qkv', got, want):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5, err_msg=f'd{name}')


# Powers of two fold down to 32 lanes; 96 and 80 stop at 48 and 40 lanes, 37 does not fold.
@pytest.mark.parametrize('n', [512, 256, 96, 80, 37, 8])
def test_tile_row_max_matches_jnp(n):
  x = _rand(0, (2, 3, 5, n)) * 10
  np.testing.assert_array_equal(ops.attention._row_max(x), x.max(-1))
  x = x.at[0, 1, 2, n - 1].set(1e4).at[1, 2, 3, 0].set(jnp.nan)  # The last lane; a NaN.
  np.testing.assert_array_equal(ops.attention._row_max(x), x.max(-1))


def test_blockwise_bf16_stays_bf16_and_near_the_oracle():
  q, k, v = (_rand(i, (1, 40, 2, 16), jnp.bfloat16) for i in range(3))
  q = q * 4  # Large logits, as in the reference's bf16 test.
  blockwise = lambda q, k, v: ops.blockwise_causal_attention(q, k, v, block_q=16, block_k=16)
  y = blockwise(q, k, v)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), np_attention(q, k, v), atol=3e-2)
  got = _weighted_sum_grads(blockwise, q, k, v)
  f32 = [a.astype(jnp.float32) for a in (q, k, v)]
  want = _weighted_sum_grads(ops.causal_attention, *f32)
  for name, g, r in zip('qkv', got, want):
    assert g.dtype == jnp.bfloat16, name
    scale = float(jnp.abs(r).max())
    np.testing.assert_allclose(np.asarray(g, np.float32), r, atol=3e-2 * scale, err_msg=name)


def test_blockwise_backward_memory_is_linear_in_length():
  # Compile only (nothing runs): the reference's temporaries hold at least one float32 L x L
  # score matrix per head, the blockwise ones a few (L, K) buffers and one tile.
  L, H = 4096, 2

  def temp_bytes(attention, L=L):
    q = jax.ShapeDtypeStruct((1, L, H, 16), jnp.float32)
    loss = lambda q, k, v: jnp.sum(attention(q, k, v))
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    return grad.lower(q, q, q).compile().memory_analysis().temp_size_in_bytes

  scores = L * L * H * 4
  assert temp_bytes(ops.causal_attention) >= scores  # The check bites on the einsum.
  blockwise = temp_bytes(ops.blockwise_causal_attention)
  assert blockwise < scores / 16
  # Linear: doubling L at most doubles the temporaries (plus the fixed tiles).
  assert temp_bytes(ops.blockwise_causal_attention, 2 * L) < 2.2 * blockwise


def test_attend_picks_by_impl_and_length():
  def picks_blockwise(L, impl):
    q = jax.ShapeDtypeStruct((1, L, 2, 8), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda q: ops.attend(q, q, q, impl=impl))(q)
    return 'custom_vjp_call' in str(jaxpr)

  n = ops.attention.BLOCKWISE_MIN_LEN
  assert not picks_blockwise(n - 1, 'auto') and picks_blockwise(n, 'auto')
  assert picks_blockwise(16, 'blockwise') and not picks_blockwise(n, 'xla')
  q = _rand(0, (1, 4, 1, 8))
  with pytest.raises(ValueError, match='impl'):
    ops.attend(q, q, q, impl='flash')


def test_mixer_blockwise_matches_xla():
  c = attn_cfg()
  u = _rand(1, (2, 16, 32))
  y = {}
  for impl in ('xla', 'blockwise'):
    c.model.attention.impl = impl
    y[impl] = CausalSelfAttention(32, c.model, rngs=nnx.Rngs(0))(u)
  np.testing.assert_allclose(y['blockwise'], y['xla'], rtol=1e-5, atol=1e-6)
  c.model.attention.impl = 'flash'
  with pytest.raises(ValueError, match='model.attention.impl='):
    CausalSelfAttention(32, c.model, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('rotary_dims', [2, 8, 16])
def test_rotary_matches_numpy_oracle_and_preserves_norms(rotary_dims):
  x = _rand(0, (2, 9, 3, 16))
  y = ops.rotary(x, rotary_dims)
  np.testing.assert_allclose(np.asarray(y), np_rotary(x, rotary_dims), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
  chex.assert_trees_all_equal(y[..., rotary_dims:], x[..., rotary_dims:])
  chex.assert_trees_all_equal(y[:, 0], x[:, 0])  # Position 0 is angle 0.


def test_rotary_zero_dims_is_identity_and_odd_dims_are_rejected():
  x = _rand(0, (1, 4, 1, 8))
  chex.assert_trees_all_equal(ops.rotary(x, 0), x)
  with pytest.raises(ValueError, match='rotary_dims'):
    ops.rotary(x, 3)
  with pytest.raises(ValueError, match='rotary_dims'):
    ops.rotary(x, 10)


@pytest.mark.parametrize('rotary_dims', [4, 8])
def test_rotary_scores_depend_only_on_the_offset(rotary_dims):
  L, K = 12, 8
  # The same q and k vector at every position: any change in q_t . k_s is positional.
  q = jnp.broadcast_to(_rand(0, (K,)), (1, L, 1, K))
  k = jnp.broadcast_to(_rand(1, (K,)), (1, L, 1, K))
  s_LxL = np.einsum('tk,sk->ts', np.asarray(ops.rotary(q, rotary_dims))[0, :, 0],
                    np.asarray(ops.rotary(k, rotary_dims))[0, :, 0])
  for offset in range(-L + 1, L):
    diag = np.diagonal(s_LxL, offset)
    np.testing.assert_allclose(diag, diag[0], atol=1e-4)
  assert np.ptp(np.diagonal(s_LxL, 0)) < 1e-4 and np.ptp(s_LxL) > 1e-2  # Not trivially flat.


def attn_cfg(D=32, H=4, n_layer=2, L=16, rotary_pct=0.25):
  c = config_lib.base_config()
  c.data.seq_len = L
  c.model.mixer = 'attention'
  c.model.d_model, c.model.d_inner, c.model.n_layer = D, 64, n_layer
  c.model.attention.num_heads, c.model.attention.rotary_pct = H, rotary_pct
  return c


@pytest.mark.parametrize('rotary_pct', [0.0, 0.25, 1.0])
def test_mixer_matches_a_numpy_reimplementation(rotary_pct):
  c = attn_cfg(rotary_pct=rotary_pct)
  op = CausalSelfAttention(32, c.model, rngs=nnx.Rngs(0))
  u = _rand(1, (2, 16, 32))
  w, b = np.asarray(op.qkv.kernel[...], np.float64), np.asarray(op.qkv.bias[...], np.float64)
  # GPT-NeoX fused layout: per head [q_h, k_h, v_h].
  qkv = (np.asarray(u, np.float64) @ w + b).reshape(2, 16, 4, 3 * 8)
  q, k, v = np.split(qkv, 3, axis=-1)
  r = int(8 * rotary_pct)
  y = np_attention(np_rotary(q, r), np_rotary(k, r), v).reshape(2, 16, 32)
  y = y @ np.asarray(op.out_proj.kernel[...], np.float64) + np.asarray(op.out_proj.bias[...])
  np.testing.assert_allclose(np.asarray(op(u)), y, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_equal(op(u, key=jax.random.PRNGKey(3)), op(u))  # No dropout.


def test_mixer_init_scales():
  c = attn_cfg(D=256, H=8, n_layer=4)
  op = CausalSelfAttention(256, c.model, n_layer=4, rngs=nnx.Rngs(0))
  assert op.rotary_dims == 8
  assert abs(float(jnp.std(op.qkv.kernel[...])) - 0.02) < 0.002
  assert abs(float(jnp.std(op.out_proj.kernel[...])) - 0.02 / np.sqrt(8)) < 0.001
  chex.assert_trees_all_equal(op.qkv.bias[...], jnp.zeros((768,)))


def test_lm_with_attention_is_causal():
  c = attn_cfg()
  model = LM(c.model, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  L = 16
  embed_to_logits = lm_embed_to_logits(graphdef, params)

  tokens = jax.random.randint(jax.random.PRNGKey(0), (2, L), 0, c.model.vocab_size)
  logits = model(tokens)
  chex.assert_shape(logits, (2, L, padded_vocab(c.model)))
  assert logits.dtype == jnp.float32
  leak, scale = future_leak(jax.jit(embed_to_logits), model.embed(tokens), L)
  assert scale > 1e-3 and leak <= 1e-6 * scale, (leak, scale)


def test_lm_with_attention_parameter_count():
  c = attn_cfg()
  D, Di, n, V = 32, 64, 2, padded_vocab(c.model)
  attn = (D * 3 * D + 3 * D) + (D * D + D)           # qkv + out_proj, with biases.
  mlp = (D * Di + Di) + (Di * D + D)
  block = attn + mlp + 2 * 2 * D                     # Two LayerNorms (scale + bias).
  expected = V * D + n * block + 2 * D               # Tied embedding, blocks, final LN.
  abstract = nnx.eval_shape(lambda: LM(c.model, rngs=nnx.Rngs(0)))
  assert sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == expected
  assert attn == 4 * D * D + 4 * D


def test_lm_with_attention_trains_on_a_fixed_batch():
  c = attn_cfg(n_layer=1)
  graphdef, params = nnx.split(LM(c.model, rngs=nnx.Rngs(0)))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (4, 17), 0, c.model.vocab_size)
  tx = optax.adam(1e-2)

  def loss_fn(p):
    logits = nnx.merge(graphdef, p)(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

  @jax.jit
  def step(p, s):
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  opt_state, losses = tx.init(params), []
  for _ in range(15):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


def test_lm_with_attention_bfloat16_keeps_float32_logits():
  c = attn_cfg()
  c.model.dtype = 'bfloat16'
  logits = LM(c.model, rngs=nnx.Rngs(0))(jnp.zeros((1, 16), jnp.int32))
  assert logits.dtype == jnp.float32
  chex.assert_tree_all_finite(logits)


def test_attention_config_is_valid():
  config_lib.validate(attn_cfg(D=256, H=8, L=64), device_count=1)


@pytest.mark.parametrize('field,value,D', [
    ('num_heads', 6, 32), ('num_heads', 0, 32), ('rotary_pct', 1.5, 32),
    ('rotary_pct', -0.1, 32), ('rotary_pct', 0.375, 64), ('rotary_base', 0.0, 32),
    ('impl', 'flash', 32)])
def test_bad_attention_config_raises_one_line(field, value, D):
  c = attn_cfg(D=D, H=8 if D == 64 else 4)
  c.model.attention[field] = value
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c, device_count=1)
  msg = str(e.value)
  assert '\n' not in msg and f'model.attention.{field}=' in msg, msg


def test_hyena_config_ignores_attention_fields():
  c = attn_cfg()
  c.model.mixer, c.model.attention.num_heads = 'hyena', 6
  config_lib.validate(c, device_count=1)
