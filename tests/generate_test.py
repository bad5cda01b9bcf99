"""Generation: cached decode == full forward for every mixer, greedy == argmax, sampling."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hyena_jax import config_lib, ops
from hyena_jax.generate import generate as gen
from hyena_jax.generate import sampling
from hyena_jax.models import LM

MIXERS = ('hyena', 'attention', 'longhorn')
V = 37


def tiny_lm(mixer: str, order: int = 2, scale: float = 6.0) -> LM:
  """A random LM far from the identity (scaled matrices), so decode errors would show."""
  c = config_lib.base_config().model
  c.update(mixer=mixer, d_model=16, n_layer=2, vocab_size=V, pad_vocab_to=8, l_max=48,
           d_inner=32)
  c.attention.update(num_heads=2, rotary_pct=0.5)
  c.hyena.update(order=order)
  graphdef, state = nnx.split(LM(c, rngs=nnx.Rngs(0)))
  state = jax.tree.map(lambda a: a * scale if a.ndim >= 2 else a, state)
  return nnx.merge(graphdef, state)


@pytest.mark.parametrize('mixer,order', [('hyena', 2), ('hyena', 3), ('attention', 2),
                                         ('longhorn', 2)])
def test_decode_equals_full_forward(mixer, order):
  model = tiny_lm(mixer, order)
  toks = jax.random.randint(jax.random.key(1), (2, 21), 0, V)
  full = model(toks)[..., :V]
  assert float(jnp.abs(full[:, 1:] - full[:, :-1]).max()) > 1.0  # The check can fail.
  for split in (1, 9):  # prefill of `split` tokens, then chunks of 1 and 4, then 1 by 1.
    cache = model.init_cache(2, 24)
    out, cache = model.decode(toks[:, :split], cache)
    outs, t = [out], split
    for size in [1, 4] + [1] * 30:
      if t >= 21:
        break
      out, cache = model.decode(toks[:, t:t + size], cache)
      outs.append(out)
      t += size
    assert int(cache['pos']) == 21
    np.testing.assert_allclose(jnp.concatenate(outs, 1)[..., :V], full, atol=2e-4, rtol=1e-4)


def test_hyena_cached_conv_matches_direct():
  u = jax.random.normal(jax.random.key(0), (2, 13, 3))
  h = jax.random.normal(jax.random.key(1), (13, 3))
  skip = jnp.arange(3.0)
  ref = ops.direct_causal_conv(u, h, skip)
  for pos, T in [(0, 1), (5, 1), (12, 1), (0, 13), (4, 6)]:
    got = ops.cached_causal_conv(u, ops.decode_taps(h), jnp.int32(pos), T)
    got = got + u[:, pos:pos + T] * skip[None, None]
    np.testing.assert_allclose(got, ref[:, pos:pos + T], atol=1e-5)


def test_cached_attention_ignores_future_slots():
  q, k, v = (jax.random.normal(jax.random.key(i), (1, 6, 2, 4)) for i in range(3))
  ref = ops.causal_attention(q, k, v)
  garbage = k.at[:, 4:].set(1e3), v.at[:, 4:].set(-1e3)
  got = ops.cached_attention(q[:, 2:4], *garbage, jnp.int32(2))
  np.testing.assert_allclose(got, ref[:, 2:4], atol=1e-5)


@pytest.mark.parametrize('mixer', MIXERS)
def test_greedy_is_argmax_of_full_forward(mixer):
  model = tiny_lm(mixer)
  prompts = [[3, 1, 4, 1, 5], [9], [2, 6, 5]]
  new = gen.generate(model, prompts, max_new_tokens=8, temperature=0.0)
  assert [len(r) for r in new] == [8, 8, 8]
  assert len({tuple(r) for r in new}) > 1 or len(set(new[0])) > 1  # Not a constant model.
  for p, n in zip(prompts, new):
    logits = model(jnp.asarray([p + n]))[0, :, :V]
    assert np.argmax(np.asarray(logits[len(p) - 1:-1]), -1).tolist() == n
  # Each row as if alone, and the full-recompute reference agrees.
  assert gen.generate(model, prompts[1:2], 8, temperature=0.0) == new[1:2]
  assert gen.generate(model, prompts, 8, temperature=0.0, method='recompute') == new


def test_sampling_is_seeded_and_reproducible():
  model = tiny_lm('hyena', scale=1.0)
  kw = dict(max_new_tokens=12, temperature=1.5)
  a = gen.generate(model, [[1, 2], [3]], seed=0, **kw)
  assert a == gen.generate(model, [[1, 2], [3]], seed=0, **kw)
  assert a != gen.generate(model, [[1, 2], [3]], seed=1, **kw)
  assert all(0 <= t < V for r in a for t in r)  # Never a padding row of the vocab.
  assert gen.generate(model, [[1, 2]], 5, top_k=1, seed=3) == gen.generate(
      model, [[1, 2]], 5, temperature=0.0)


def test_eos_cuts_rows():
  model = tiny_lm('attention')
  [row] = gen.generate(model, [[1, 2]], 8, temperature=0.0)
  eos = row[2]
  [cut] = gen.generate(model, [[1, 2]], 8, temperature=0.0, eos_id=eos)
  assert cut == row[:row.index(eos) + 1]


def test_filter_logits_top_k_and_top_p():
  logits = jnp.log(jnp.asarray([[0.5, 0.2, 0.15, 0.1, 0.05]]))
  kept = lambda **kw: (sampling.filter_logits(logits, **kw) > -1e30)[0].tolist()
  assert kept(top_k=2) == [True, True, False, False, False]
  assert kept(top_p=0.5) == [True, False, False, False, False]   # 0.5 reached by the first.
  assert kept(top_p=0.6) == [True, True, False, False, False]    # The crossing token is kept.
  assert kept(top_p=0.86) == [True, True, True, True, False]
  assert kept(top_k=3, top_p=0.6) == [True, True, False, False, False]
  assert kept() == [True] * 5


def test_sample_frequencies_follow_temperature():
  p = np.array([0.6, 0.3, 0.1])
  logits = jnp.tile(jnp.log(jnp.asarray(p))[None], (20000, 1))
  for temp in (1.0, 0.5):
    draws = np.asarray(sampling.sample(jax.random.key(0), logits, temperature=temp))
    want = p**(1 / temp) / (p**(1 / temp)).sum()
    freq = np.bincount(draws, minlength=3) / len(draws)
    np.testing.assert_allclose(freq, want, atol=0.015)
  draws = np.asarray(sampling.sample(jax.random.key(0), logits, top_p=0.7))
  assert collections.Counter(draws.tolist()).keys() <= {0, 1}


def test_bad_arguments():
  model = tiny_lm('hyena')
  with pytest.raises(ValueError, match='at least one token'):
    gen.generate(model, [[1], []], 3)
  with pytest.raises(ValueError, match='temperature'):
    gen.generate(model, [[1]], 3, temperature=-1.0)
  with pytest.raises(ValueError, match='top_p'):
    gen.generate(model, [[1]], 3, top_p=0.0)
  with pytest.raises(ValueError, match='outside'):
    gen.generate(model, [[V]], 3)
  with pytest.raises(ValueError, match='exceeds l_max'):
    gen.generate(model, [[1] * 40], 20)
  with pytest.raises(ValueError, match='method'):
    gen.generate(model, [[1]], 3, method='bogus')


def test_modal_decode_equals_the_modal_forward_and_approximates_the_filter():
  from hyena_jax.generate import modal  # pylint: disable=g-import-not-at-top
  model = tiny_lm('hyena', scale=1.0)
  modal_model, report = modal.to_modal(model, order=8)
  assert [r['layer'] for r in report] == [0, 1] and model.blocks[0].mixer.modal_poles is None
  assert all(r['max_rel_err'] < 0.05 for r in report), report
  toks = jax.random.randint(jax.random.key(2), (2, 20), 0, V)
  full = modal_model(toks)[..., :V]
  np.testing.assert_allclose(full, model(toks)[..., :V], atol=0.05)  # Close to the original.
  cache = modal_model.init_cache(2, 24)
  assert 'hist' not in cache['layers'][0] and cache['layers'][0]['modal'].shape[-1] == 8
  out, cache = modal_model.decode(toks[:, :5], cache)
  outs = [out]
  for t in range(5, 20):
    out, cache = modal_model.decode(toks[:, t:t + 1], cache)
    outs.append(out)
  np.testing.assert_allclose(jnp.concatenate(outs, 1)[..., :V], full, atol=1e-4, rtol=1e-4)
  new = gen.generate(modal_model, [[1, 2, 3]], 6, temperature=0.0)
  logits = modal_model(jnp.asarray([[1, 2, 3] + new[0]]))[0, :, :V]
  assert np.argmax(np.asarray(logits[2:-1]), -1).tolist() == new[0]
