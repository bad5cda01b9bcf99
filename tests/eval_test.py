"""hyena_jax.eval.perplexity: window layouts and every mode against brute-force scoring."""

import functools
import math

import jax
import numpy as np
import pytest
from flax import nnx

from hyena_jax import config_lib, steps
from hyena_jax.eval import perplexity
from hyena_jax.models import LM

V, L = 13, 8


def concat_batches(batches):
  batches = list(batches)
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]} if batches else {}


@pytest.mark.parametrize('n,seq_len,stride,batch_size', [
    (5, 8, 8, 3),     # fewer targets than one window
    (5, 8, 3, 3),
    (9, 8, 8, 3),     # exactly one window
    (17, 8, 8, 3),    # exact multiple of L
    (17, 8, 4, 2),    # exact multiple of the stride
    (20, 8, 8, 3),    # ragged end
    (20, 8, 3, 3),
    (20, 8, 1, 4),
    (2, 8, 5, 1),     # a single target
    (150, 4, 1, 1),   # more windows than one host chunk (64 * batch_size)
    (300, 4, 1, 3),   # several chunks, the last batch padded
])
def test_windows_score_every_target_once_from_its_context_start(n, seq_len, stride, batch_size):
  stream = np.arange(n)  # Token value == stream index, so the layout can be read back.
  b = concat_batches(perplexity.window_batches(stream, seq_len, stride, batch_size))
  assert b['inputs'].shape[0] % batch_size == 0
  # Every real window scores at least one target; filler rows score none.
  rows = np.flatnonzero(b['acc_mask'].sum(1) > 0)
  starts, _ = perplexity.plan(n, seq_len, stride)
  assert len(rows) == len(starts)
  times_scored = np.zeros(n, int)
  for w, r in enumerate(rows):
    start = w * stride
    assert b['inputs'][r, 0] == start
    for j in np.flatnonzero(b['acc_mask'][r]):
      t = start + j + 1
      assert b['targets'][r, j] == t
      np.testing.assert_array_equal(b['inputs'][r, :j + 1], stream[start:t])
      assert start == perplexity.context_start(t, seq_len, stride), (t, start)
      assert t - start >= min(t, seq_len - stride + 1)  # the promised minimum context
      times_scored[t] += 1
  np.testing.assert_array_equal(times_scored[1:], 1)
  assert set(np.unique(b['acc_mask'])) <= {0.0, 1.0}


def test_context_start_by_hand():
  # L=8, stride=3: windows start at 0, 3, 6; window 0 scores targets 1..8, then 3 per window.
  t = np.array([1, 8, 9, 11, 12, 14, 15])
  np.testing.assert_array_equal(perplexity.context_start(t, 8, 3), [0, 0, 3, 3, 6, 6, 9])
  # nonoverlap = stride L: targets 9..16 come from the window at 8.
  np.testing.assert_array_equal(perplexity.context_start([8, 9, 16, 17], 8, 8), [0, 8, 8, 16])


def test_plan_rejects_a_stride_outside_one_to_l():
  for stride in (0, 9):
    with pytest.raises(ValueError, match='stride'):
      perplexity.plan(20, 8, stride)


def test_a_stream_without_targets_yields_no_batches():
  assert not list(perplexity.window_batches(np.arange(1), 8, 8, 2))
  assert not list(perplexity.l2t_batches(np.arange(5), 5, 2))


def test_l2t_windows_cover_every_stride_one_window():
  n, window = 12, 5
  b = concat_batches(perplexity.l2t_batches(np.arange(n), window, 4))
  real = b['acc_mask'].sum(1) > 0
  np.testing.assert_array_equal(b['inputs'][real, 0], np.arange(n - window))
  np.testing.assert_array_equal(b['targets'][real], b['inputs'][real] + 1)
  assert b['acc_mask'].sum() == (n - window) * window


# --- against brute force on a tiny LM ---------------------------------------------------


@pytest.fixture(scope='module')
def tiny_lm():
  c = config_lib.base_config()
  c.data.seq_len, c.model.l_max, c.model.vocab_size = L, L, V
  c.model.d_model, c.model.d_inner, c.model.n_layer = 16, 32, 2
  c.model.hyena.filter_order, c.model.hyena.emb_dim = 16, 3
  c.model.embed_dropout = c.model.resid_dropout = 0.0
  c.model.dtype = 'float32'
  graphdef, params = nnx.split(LM(c.model, rngs=nnx.Rngs(0)), nnx.Param)
  # At init (embeddings ~0.02) every prediction is near-uniform, so a wrong context would
  # hardly move the loss; noise on every weight makes predictions depend on the context.
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  leaves = [p + 0.5 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
  params = jax.tree.unflatten(treedef, leaves)
  # Compiled once per module and shape: every test below reuses them.
  eval_step = jax.jit(functools.partial(steps.eval_step, graphdef=graphdef))
  forward = jax.jit(lambda p, tokens: nnx.merge(graphdef, p)(tokens))
  return params, eval_step, forward


def stream_of(n, seed=0):
  return np.random.default_rng(seed).integers(0, V, n)


def batched_nll(lm, batches) -> tuple[float, float]:
  params, eval_step, _ = lm
  nll = count = 0.0
  for b in batches:
    out = eval_step(params, b)
    nll, count = nll + float(out['loss_sum']), count + float(out['count'])
  return nll, count


def brute_force_nll(lm, stream, contexts, rows=64) -> np.ndarray:
  """-log p(stream[t] | stream[s:t]) for each (s, t), the model run on stream[s:t] alone."""
  params, _, forward = lm
  out = np.zeros(len(contexts))
  for k in sorted({t - s for s, t in contexts}):  # One shape per context length.
    idx = [i for i, (s, t) in enumerate(contexts) if t - s == k]
    assert len(idx) <= rows
    tokens = np.zeros((rows, k), np.int32)  # Rows are independent; unused ones are dropped.
    tokens[:len(idx)] = [stream[contexts[i][0]:contexts[i][1]] for i in idx]
    logp = np.asarray(jax.nn.log_softmax(forward(params, tokens)[:len(idx), -1, :], axis=-1))
    out[idx] = -logp[np.arange(len(idx)), [stream[contexts[i][1]] for i in idx]]
  return out


@pytest.mark.parametrize('stride', [L, 3], ids=['nonoverlap', 'sliding'])
def test_window_modes_match_brute_force(tiny_lm, stride):
  stream = stream_of(40)
  nll, count = batched_nll(tiny_lm, perplexity.window_batches(stream, L, stride, 4))
  ts = np.arange(1, len(stream))
  contexts = [(int(perplexity.context_start(t, L, stride)), int(t)) for t in ts]
  expect = brute_force_nll(tiny_lm, stream, contexts)
  assert count == len(stream) - 1
  np.testing.assert_allclose(nll, expect.sum(), rtol=1e-4)


def test_brute_force_is_sensitive_to_the_context(tiny_lm):
  # Guards the test above: if context did not matter, any window layout would pass it.
  stream = stream_of(40)
  ts = range(9, len(stream))
  full = brute_force_nll(tiny_lm, stream, [(t - L, t) for t in ts])
  short = brute_force_nll(tiny_lm, stream, [(t - 2, t) for t in ts])
  assert np.abs(full - short).mean() > 1e-2


def test_l2t_mode_matches_brute_force(tiny_lm):
  stream, window = stream_of(30, seed=1), 5
  nll, count = batched_nll(tiny_lm, perplexity.l2t_batches(stream, window, 4))
  contexts = [(i, i + j + 1) for i in range(len(stream) - window) for j in range(window)]
  expect = brute_force_nll(tiny_lm, stream, contexts)
  assert count == len(contexts)
  np.testing.assert_allclose(nll / count, expect.mean(), rtol=1e-4)


def test_filler_rows_of_the_last_batch_carry_no_weight(tiny_lm):
  stream = stream_of(23, seed=2)  # 22 targets in 3 windows: one batch of 3 rows + 1 filler.
  batches = list(perplexity.window_batches(stream, L, L, 4))
  assert len(batches) == 1 and batches[0]['acc_mask'][3:].sum() == 0
  nll, count = batched_nll(tiny_lm, batches)
  assert count == len(stream) - 1
  # Real tokens in the filler row must change nothing either: the weight, not the zero
  # tokens, keeps it out.
  b = {k: v.copy() for k, v in batches[0].items()}
  b['inputs'][3], b['targets'][3] = b['inputs'][0], b['targets'][0]
  nll_real_filler, _ = batched_nll(tiny_lm, [b])
  np.testing.assert_allclose(nll, nll_real_filler, rtol=1e-6)
  contexts = [(int(perplexity.context_start(t, L, L)), t) for t in range(1, len(stream))]
  np.testing.assert_allclose(nll, brute_force_nll(tiny_lm, stream, contexts).sum(), rtol=1e-4)


# --- summary ----------------------------------------------------------------------------


def test_summarize_perplexity_and_bits_per_byte():
  r = perplexity.summarize(nll_sum=30.0, count=12.0, n_bytes=50.0)
  np.testing.assert_allclose(r['perplexity'], math.exp(30.0 / 12.0), rtol=1e-12)
  np.testing.assert_allclose(r['nll_per_token'], 2.5, rtol=1e-12)
  np.testing.assert_allclose(r['bits_per_byte'], 30.0 / math.log(2.0) / 50.0, rtol=1e-12)
  assert r['tokens'] == 12.0 and r['bytes'] == 50.0


def test_summarize_without_bytes_reports_no_bits_per_byte():
  r = perplexity.summarize(nll_sum=4.0, count=2.0)
  assert 'bits_per_byte' not in r
  np.testing.assert_allclose(r['perplexity'], math.exp(2.0), rtol=1e-12)
