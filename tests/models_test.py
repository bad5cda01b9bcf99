"""hyena_jax.models: the Hyena operator and the LM."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, traverse_util

from hyena_jax import config_lib, ops
from hyena_jax.models import LM, HyenaOperator, padded_vocab

CONFIGS = os.path.join(os.path.dirname(__file__), '..', 'configs')


def load_config(name):
  return config_lib.load_config_file(os.path.join(CONFIGS, name + '.py'))


def small_cfg(order=2, L=16, D=8):
  c = config_lib.base_config()
  c.data.seq_len = L
  c.model.d_model, c.model.d_inner, c.model.n_layer = D, 16, 2
  c.model.hyena.order = order
  c.model.hyena.filter_order = 8
  c.model.hyena.emb_dim = 5
  return c


def future_leak(fn, x, L) -> tuple[float, float]:
  """max |d out_t / d in_s| over s > t, and over s <= t (for scale)."""
  jac = jax.jacrev(lambda a: fn(a).sum(axis=(0, 2)) if fn(a).ndim == 3 else fn(a))(x)
  # jac[t, b, s, ...]: sum over batch/feature of out at t w.r.t. input at s.
  g = np.abs(np.asarray(jac)).reshape(L, x.shape[0], L, -1).sum(axis=(1, 3))
  future = np.triu(g, k=1)
  return float(future.max()), float(np.tril(g).max())


def test_leak_detector_catches_a_non_causal_map():
  L = 8
  x = jax.random.normal(jax.random.PRNGKey(0), (1, L, 2))
  leak, scale = future_leak(lambda a: jnp.flip(a, axis=1), x, L)
  assert leak > 0.5 * scale


@pytest.mark.parametrize('order', [2, 3])
def test_operator_shapes_and_causality(order):
  c = small_cfg(order)
  op = HyenaOperator(8, c.model, rngs=nnx.Rngs(0))
  u = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 8))
  y = op(u)
  chex.assert_shape(y, (2, 16, 8))
  chex.assert_tree_all_finite(y)
  leak, scale = future_leak(op, u, 16)
  assert scale > 1e-5
  assert leak <= 1e-6 * scale, (leak, scale)


def lm_embed_to_logits(graphdef, params):
  """The LM after its embedding lookup, so causality tests can perturb embeddings directly."""

  def embed_to_logits(x_BxLxD):
    m = nnx.merge(graphdef, params)
    for block in m.blocks:
      x_BxLxD = block(x_BxLxD)
    return m.ln_f(x_BxLxD) @ m.embed.embedding[...].T

  return embed_to_logits


class LMTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_lm_logits_shape_dtype_and_causality(self):
    c = small_cfg()
    model = LM(c.model, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    L = 16
    embed_to_logits = lm_embed_to_logits(graphdef, params)

    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, L), 0, c.model.vocab_size)
    logits = self.variant(lambda p, t: nnx.merge(graphdef, p)(t))(params, tokens)
    chex.assert_shape(logits, (2, L, padded_vocab(c.model)))
    assert logits.dtype == jnp.float32
    x = model.embed(tokens)
    leak, scale = future_leak(embed_to_logits, x, L)
    assert scale > 1e-3 and leak <= 1e-6 * scale, (leak, scale)


def test_sequence_longer_than_l_max_is_an_error():
  c = small_cfg()
  op = HyenaOperator(8, c.model, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='l_max'):
    op(jnp.zeros((1, 17, 8)))


def test_filter_slices_for_shorter_inputs():
  c = small_cfg()
  op = HyenaOperator(8, c.model, rngs=nnx.Rngs(0))
  chex.assert_shape(op.filter(16), (16, 8))
  chex.assert_trees_all_close(op.filter(5), op.filter(16)[:5], atol=1e-6)


def test_skip_is_standard_normal_and_init_scales_follow_safari():
  c = small_cfg()
  c.model.d_model, c.model.n_layer = 256, 4
  op = HyenaOperator(256, c.model, n_layer=4, rngs=nnx.Rngs(0))
  assert abs(float(jnp.std(op.filter.bias[...])) - 1.0) < 0.1
  assert abs(float(jnp.std(op.in_proj.kernel[...])) - 0.02) < 0.002
  assert abs(float(jnp.std(op.filter.mlp[1].kernel[...])) - 0.02) < 0.003
  assert abs(float(jnp.std(op.out_proj.kernel[...])) - 0.02 / np.sqrt(8)) < 0.001
  chex.assert_trees_all_equal(op.in_proj.bias[...], jnp.zeros_like(op.in_proj.bias[...]))
  chex.assert_trees_all_equal(op.filter.omega[...], jnp.full((8,), c.model.hyena.w))


def _count(model_cfg):
  abstract = nnx.eval_shape(lambda: LM(model_cfg, rngs=nnx.Rngs(0)))
  return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_pile_153m_parameter_count():
  c = load_config('hyena_pile_153m')
  assert padded_vocab(c.model) == 50264
  assert _count(c.model) == 153_700_416
  c.model.hyena.learn_pos_emb = False
  assert _count(c.model) == 152_483_904


def test_bfloat16_compute_keeps_float32_logits():
  c = small_cfg()
  c.model.dtype = 'bfloat16'
  model = LM(c.model, rngs=nnx.Rngs(0))
  logits = model(jnp.zeros((1, 16), jnp.int32))
  assert logits.dtype == jnp.float32
  chex.assert_tree_all_finite(logits)


def test_pythia_70m_parameter_count():
  c = load_config('pythia_70m')
  assert _count(c.model) == 70_426_624  # EleutherAI/pythia-70m (distill.md §3.1).
  c.model.tie_embeddings = True
  assert _count(c.model) == 70_426_624 - 50304 * 512


@pytest.mark.parametrize('hyena,transformer', [('ptb_hyena', 'ptb_transformer'),
                                               ('wikitext2_hyena', 'wikitext2_transformer')])
def test_transformer_baselines_match_hyena_parameter_counts(hyena, transformer):
  h, t = load_config(hyena), load_config(transformer)
  assert (h.model.mixer, t.model.mixer) == ('hyena', 'attention')
  assert t.data.to_dict() == h.data.to_dict() and t.optim.to_dict() == h.optim.to_dict()
  n_h, n_t = _count(h.model), _count(t.model)
  assert abs(n_t - n_h) <= 0.01 * n_h, (n_h, n_t)


def _option_cfg(**kw):
  c = small_cfg()
  c.model.mixer = 'attention'
  c.model.attention.update(num_heads=2, rotary_pct=0.5)
  c.model.update(**kw)
  return c.model


def _randomized(model, seed=0):
  """Params at a scale where each branch of the block visibly moves the output."""
  state = nnx.state(model, nnx.Param)
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), len(jax.tree.leaves(state))))
  nnx.update(model, jax.tree.map(lambda p: p + 0.3 * jax.random.normal(next(keys), p.shape),
                                 state))
  return model


def test_parallel_residual_and_exact_gelu_follow_their_equations():
  m = _option_cfg(residual='parallel', gelu='exact')
  block = _randomized(LM(m, rngs=nnx.Rngs(0))).blocks[0]
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 8))
  mlp = block.mlp
  erf_gelu = lambda u: 0.5 * u * (1.0 + jax.scipy.special.erf(u / np.sqrt(2.0)))
  mlp_out = mlp.fc2(erf_gelu(mlp.fc1(block.ln2(x))))
  want = x + block.mixer(block.ln1(x)) + mlp_out
  chex.assert_trees_all_close(block(x), want, atol=1e-5)
  # The defaults (sequential, tanh GELU) are a different function of the same weights.
  m.update(residual='sequential', gelu='tanh')
  seq = LM(m, rngs=nnx.Rngs(0)).blocks[0]
  nnx.update(seq, nnx.state(block, nnx.Param))
  h = x + seq.mixer(seq.ln1(x))
  chex.assert_trees_all_close(seq(x), h + seq.mlp(seq.ln2(h)), atol=1e-5)
  assert float(jnp.abs(seq(x) - want).max()) > 1e-2


def test_d_inner_zero_is_a_block_without_mlp():
  c = small_cfg()
  c.model.d_inner = 0
  config_lib.validate(c)
  model = LM(c.model, rngs=nnx.Rngs(0))
  block = model.blocks[0]
  assert block.mlp is None and block.ln2 is None
  paths = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model)))
  # The Hyena filter has an `mlp` of its own: look at the block level only.
  assert {p[2] for p in paths if p[0] == 'blocks'} == {'ln1', 'mixer'}, sorted(paths)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 8))
  chex.assert_trees_all_close(block(x), x + block.mixer(block.ln1(x)), atol=1e-6)


def test_untied_head_is_its_own_table_and_padding_stays_masked():
  m = _option_cfg(tie_embeddings=False, vocab_size=29)  # Padded to 32 rows.
  model = LM(m, rngs=nnx.Rngs(0))
  assert model.head.embedding.shape == model.embed.embedding.shape == (32, 8)
  assert abs(float(jnp.std(model.head.embedding[...])) - 0.02) < 0.005
  assert not np.allclose(model.head.embedding[...], model.embed.embedding[...])
  tokens = jnp.arange(16)[None] % 29
  logits = model(tokens)
  h = model.ln_f(model(tokens, return_hidden=True)[1][-1])
  chex.assert_trees_all_close(logits[..., :29], (h @ model.head.embedding[...].T)[..., :29],
                              atol=1e-6)
  assert bool(jnp.all(logits[..., 29:] == -1e9))
  tied = LM(_option_cfg(vocab_size=29), rngs=nnx.Rngs(0))
  assert tied.head is None
