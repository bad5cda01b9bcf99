"""hyena_jax.eval.lm_eval_adapter against direct (eager, unpadded) runs of a tiny word LM."""

import functools

import jax
import numpy as np
import pytest
from flax import nnx

pytest.importorskip('lm_eval')
from lm_eval.api.instance import Instance  # pylint: disable=g-import-not-at-top
from lm_eval.api import registry  # pylint: disable=g-import-not-at-top

from hyena_jax import config_lib, steps  # pylint: disable=g-import-not-at-top
from hyena_jax.data.tokenizers import ByteTokenizer, WordTokenizer  # pylint: disable=g-import-not-at-top
from hyena_jax.eval import lm_eval_adapter, perplexity  # pylint: disable=g-import-not-at-top
from hyena_jax.models import LM  # pylint: disable=g-import-not-at-top

L = 32        # The adapter's max_length (two buckets: 16 and 32).
L_MAX = 64    # The model's filters: long enough to run untruncated inputs directly.
WORDS = [f'w{i}' for i in range(20)] + ['<eos>']
TOK = WordTokenizer(WORDS)


@pytest.fixture(scope='module')
def model():
  c = config_lib.base_config()
  c.data.seq_len, c.model.l_max, c.model.vocab_size = L_MAX, L_MAX, len(WORDS)
  c.model.d_model, c.model.d_inner, c.model.n_layer = 16, 32, 1
  c.model.hyena.filter_order, c.model.hyena.emb_dim = 8, 3
  c.model.embed_dropout = 0.0

  def init():
    params = nnx.state(LM(c.model, rngs=nnx.Rngs(0)), nnx.Param)
    # At init every prediction is near-uniform; noise makes them depend on the context.
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    return jax.tree.unflatten(
        treedef, [p + 0.5 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])

  graphdef, _ = nnx.split(nnx.eval_shape(lambda: LM(c.model, rngs=nnx.Rngs(0))), nnx.Param)
  return nnx.merge(graphdef, jax.jit(init)())  # One compile, not one per eager init op.


@pytest.fixture(scope='module')
def forward(model):
  """The direct reference: one unpadded row at its exact length (jit: a compile per length
  is 5x cheaper than running the ops eagerly)."""
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t)[0, :, :len(WORDS)])
  return lambda tokens: np.asarray(fn(state, np.asarray(tokens, np.int32)[None]))


@pytest.fixture(scope='module')
def adapter(model):
  return lm_eval_adapter.HyenaJaxLM.from_model(model, TOK, max_length=L, batch_size=4,
                                               max_gen_toks=8)


def text(n, seed):
  """n words of the vocabulary (no <eos>), space-separated."""
  ids = np.random.default_rng(seed).integers(0, len(WORDS) - 1, n)
  return ' '.join(WORDS[i] for i in ids)


def req(kind, *args):
  return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0)


def logp_rows(forward, tokens):
  """log p(tokens[t] | tokens[:t]) for t >= 1 and whether each is the argmax."""
  logp = np.asarray(jax.nn.log_softmax(forward(tokens[:-1]), axis=-1))
  return logp[np.arange(len(tokens) - 1), tokens[1:]], logp.argmax(-1) == np.asarray(tokens[1:])


def enc(s):
  return lm_eval_adapter.encode_text(TOK, s)


def direct_loglikelihood(forward, context, continuation, max_length=L):
  ctx = enc(context) if context else [TOK.eos_id]
  cont = enc(context + continuation)[len(enc(context)):] if context else enc(continuation)
  logp, greedy = logp_rows(forward, (ctx + cont)[-(max_length + 1):])
  return float(logp[-len(cont):].sum()), bool(greedy[-len(cont):].all())


LL_PAIRS = [('w1 w2 w3', ' w4'), ('w5', ' w6 w7 w8'), (text(20, 1), ' w9 w0'),
            ('', 'w3 w4'), (text(3, 2), ' w11'), (text(12, 3) + '\n' + text(4, 4), ' w2')]


def test_text_codecs_drop_the_record_end():
  ids = enc('w1 w2\nw3')
  assert ids == [1, 2, TOK.eos_id, 3]
  assert lm_eval_adapter.decode_ids(TOK, ids + [4]) == ' w1 w2\nw3 w4'
  assert lm_eval_adapter.encode_text(ByteTokenizer(), 'ab\n') == [97, 98, 10]
  assert lm_eval_adapter.default_prefix_id(ByteTokenizer()) == 10  # no eos: the newline
  assert lm_eval_adapter.default_prefix_id(TOK) == TOK.eos_id


def test_bucket_len():
  assert [lm_eval_adapter.bucket_len(n, 32) for n in (1, 16, 17, 32)] == [16, 16, 32, 32]
  assert lm_eval_adapter.bucket_len(100, 48) == 48


def test_registered_with_the_harness():
  assert registry.get_model('hyena_jax') is lm_eval_adapter.HyenaJaxLM


def test_loglikelihood_matches_direct_computation(adapter, forward):
  got = adapter.loglikelihood([req('loglikelihood', c, x) for c, x in LL_PAIRS])
  for (c, x), (logp, greedy) in zip(LL_PAIRS, got):
    want_logp, want_greedy = direct_loglikelihood(forward, c, x)
    np.testing.assert_allclose(logp, want_logp, rtol=1e-4, atol=1e-4)
    assert greedy == want_greedy
  assert all(lp < 0 for lp, _ in got)


def test_is_greedy_is_true_exactly_for_the_greedy_continuation(adapter, forward):
  context = text(6, 5)
  best = int(forward(enc(context))[-1].argmax())
  other = (best + 1) % (len(WORDS) - 1)
  (_, g_best), (_, g_other) = adapter.loglikelihood(
      [req('loglikelihood', context, ' ' + WORDS[best]),
       req('loglikelihood', context, ' ' + WORDS[other])])
  assert best != TOK.eos_id and g_best and not g_other


def test_long_context_is_truncated_on_the_left(adapter, forward):
  context, cont = text(50, 6), ' w1 w2'
  (logp, _), = adapter.loglikelihood([req('loglikelihood', context, cont)])
  np.testing.assert_allclose(logp, direct_loglikelihood(forward, context, cont)[0], rtol=1e-4)
  # The truncation matters: the whole context (the model's filters allow 64) scores differently.
  untruncated = direct_loglikelihood(forward, context, cont, max_length=L_MAX)[0]
  assert abs(logp - untruncated) > 1e-3


def direct_rolling(forward, doc_ids) -> float:
  """Windows written out by hand: disjoint windows of L targets after the prefix token; the
  last, partial window keeps a full L-token context."""
  stream, n = [TOK.eos_id] + doc_ids, len(doc_ids)
  total = 0.0
  for start in range(0, n, L):
    stop = min(start + L, n)  # Targets stream[start + 1 .. stop].
    lo = max(stop - L, 0)
    logp, _ = logp_rows(forward, stream[lo:stop + 1])
    total += float(logp[start - lo:].sum())
  return total


def test_loglikelihood_rolling_matches_windows_and_nonoverlap_perplexity(adapter, model, forward):
  docs = [text(5, 7), text(L, 8), text(2 * L, 9), text(45, 10), text(3, 11) + '\n' + text(30, 12)]
  got = adapter.loglikelihood_rolling([req('loglikelihood_rolling', d) for d in docs])
  for d, g in zip(docs, got):
    np.testing.assert_allclose(g, direct_rolling(forward, enc(d)), rtol=1e-4)
  # Lengths <= L or a multiple of it: the same windows as perplexity.py's nonoverlap mode.
  graphdef, params = nnx.split(model, nnx.Param)
  eval_step = jax.jit(functools.partial(steps.eval_step, graphdef=graphdef))
  for d, g in zip(docs[:3], got):
    stream = np.asarray([TOK.eos_id] + enc(d))
    nll = sum(float(eval_step(params, b)['loss_sum'])
              for b in perplexity.window_batches(stream, L, L, 4))
    np.testing.assert_allclose(g, -nll, rtol=1e-4)


GEN_CONTEXTS = [text(4, 13), text(40, 14), '', text(9, 15)]
N_GEN = 8


def gen_context(c):
  return (enc(c) or [TOK.eos_id])[-(L - N_GEN):]  # Room for N_GEN tokens, as the harness.


def check_greedy(forward, ctx, gen):
  """gen is the greedy continuation of ctx: for a causal model one forward pass over
  ctx + gen holds every step of the greedy loop (teacher forcing)."""
  pred = forward(ctx + gen).argmax(-1)[len(ctx) - 1:]
  np.testing.assert_array_equal(pred[:len(gen)], gen)
  return int(pred[len(gen)])  # What the loop would generate next.


def cut_at(gen, until):
  """The prefix of gen up to the token whose text completes `until`."""
  for k in range(1, len(gen) + 1):
    if until in lm_eval_adapter.decode_ids(TOK, gen[:k]):
      return gen[:k]
  return gen


def test_generate_until_matches_a_direct_greedy_loop(adapter, forward):
  ctxs = [gen_context(c) for c in GEN_CONTEXTS]
  full = adapter.greedy(ctxs, [], N_GEN)
  for ctx, g in zip(ctxs, full):
    nxt = check_greedy(forward, ctx, g)
    assert len(g) == N_GEN or nxt == TOK.eos_id  # It stops at <eos> or at N_GEN tokens.
  # Stop strings taken from each context's own greedy text (its third word) cut it short.
  untils = [' ' + WORDS[g[2]] if len(g) > 3 else None for g in full]
  assert sum(u is not None for u in untils) >= 2, untils
  kw = [{'until': [u] if u else [], 'max_gen_toks': N_GEN} for u in untils]
  got = adapter.generate_until([req('generate_until', c, k) for c, k in zip(GEN_CONTEXTS, kw)])
  for ctx, g, u, out in zip(ctxs, full, untils, got):
    want = lm_eval_adapter.decode_ids(TOK, g)
    assert out == (want.split(u)[0] if u else want), (u, want)
    if u:
      assert u in want and u not in out
      ids, = adapter.greedy([ctx], [u], N_GEN)  # Decoding stopped at the stop string.
      assert ids == cut_at(g, u) and len(ids) < len(g)


class IdTokenizer:
  """A trivial tokenizer (the adapter's generic path): 'w7' <-> 7, end of text chosen."""

  def __init__(self, eos_id):
    self.eos_id, self.vocab_size = eos_id, len(WORDS)

  def encode(self, s):
    return [int(w[1:]) for w in s.split()]

  def decode(self, ids):
    return ''.join(f' w{i}' for i in ids)


def test_generation_stops_at_end_of_text_and_drops_it(adapter, model):
  ctx = gen_context(GEN_CONTEXTS[0])
  g, = adapter.greedy([ctx], [], N_GEN)
  eot = g[3]  # Declared the end-of-text id: decoding must stop before it.
  lm = lm_eval_adapter.HyenaJaxLM.from_model(model, IdTokenizer(eot), max_length=L,
                                             batch_size=4, max_gen_toks=N_GEN)
  out, = lm.generate_until([req('generate_until', GEN_CONTEXTS[0], {'until': []})])
  assert out == ''.join(f' w{i}' for i in g[:g.index(eot)])


def test_batch_size_and_padding_do_not_change_results(adapter, model):
  one = lm_eval_adapter.HyenaJaxLM.from_model(model, TOK, max_length=L, batch_size=1,
                                              max_gen_toks=N_GEN)
  ll = [req('loglikelihood', c, x) for c, x in LL_PAIRS]
  roll = [req('loglikelihood_rolling', text(45, 17)), req('loglikelihood_rolling', 'w1 w2')]
  gen = [req('generate_until', c, {'until': ['w3']}) for c in GEN_CONTEXTS]
  a = adapter.loglikelihood(ll), adapter.loglikelihood_rolling(roll), adapter.generate_until(gen)
  b = one.loglikelihood(ll), one.loglikelihood_rolling(roll), one.generate_until(gen)
  np.testing.assert_allclose([x for x, _ in a[0]], [x for x, _ in b[0]], rtol=1e-5, atol=1e-5)
  assert [g for _, g in a[0]] == [g for _, g in b[0]]
  np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
  assert a[2] == b[2]


class _ForwardOnly(nnx.Module):
  """A model with no decode cache: the adapter must fall back to recomputing the forward."""

  def __init__(self, lm):
    self.lm = lm

  def __call__(self, tokens_BxL):
    return self.lm(tokens_BxL)


def test_cached_and_recompute_greedy_agree(adapter, model):
  slow = lm_eval_adapter.HyenaJaxLM.from_model(_ForwardOnly(model), TOK, max_length=L,
                                               batch_size=4, max_gen_toks=8)
  assert not hasattr(slow._model, 'decode') and hasattr(adapter._model, 'decode')
  ctxs = [gen_context(c) for c in GEN_CONTEXTS]
  assert slow.greedy(ctxs, [], N_GEN) == adapter.greedy(ctxs, [], N_GEN)
