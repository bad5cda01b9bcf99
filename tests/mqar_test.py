"""hyena_jax.data.mqar: zoology's multi-query associative recall, and the masked loss."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import helpers
from hyena_jax import config_lib, steps
from hyena_jax.data import mqar

V, L, N = 40, 32, 4


_make_batch = jax.jit(mqar.make_batch, static_argnums=1, static_argnames=(
    'seq_len', 'vocab_size', 'num_kv_pairs', 'power_a', 'random_non_queries'))


def gen(key=0, batch=64, **kw):
  args = dict(seq_len=L, vocab_size=V, num_kv_pairs=N, power_a=0.01, random_non_queries=True)
  return jax.tree.map(np.asarray, _make_batch(jax.random.PRNGKey(key), batch, **(args | kw)))


def small_config(**data):
  c = config_lib.base_config()
  c.data.update(name='mqar', seq_len=L, vocab_size=V, num_eval=16)
  c.data.mqar.num_kv_pairs = N
  c.data.update(data)
  c.model.update(d_model=16, d_inner=32, n_layer=1)
  c.train.global_batch_size = 8
  return c


def test_example_structure():
  b = gen()
  assert b['inputs'].shape == b['targets'].shape == b['acc_mask'].shape == (64, L)
  assert b['inputs'].dtype == b['targets'].dtype == np.int32
  assert b['acc_mask'].dtype == b['loss_mask'].dtype == np.float32
  np.testing.assert_array_equal(b['loss_mask'], b['acc_mask'])
  for x, y, m in zip(b['inputs'], b['targets'], b['acc_mask']):
    keys, vals = x[0:2 * N:2], x[1:2 * N:2]
    assert len(set(keys)) == N and len(set(vals)) == N  # Without replacement.
    assert ((1 <= keys) & (keys < V // 2)).all() and ((V // 2 <= vals) & (vals < V)).all()
    pos = np.flatnonzero(m)
    assert len(pos) == N and set(m) <= {0.0, 1.0}
    assert (pos >= 2 * N).all() and ((pos - 2 * N) % 2 == 0).all()  # Even slots after context.
    assert sorted(x[pos]) == sorted(keys)  # Every key queried exactly once.
    value_of = dict(zip(keys, vals))
    assert [y[p] for p in pos] == [value_of[k] for k in x[pos]]
    assert (y[m == 0] == 0).all()
    assert ((0 <= x) & (x < V)).all()


def test_filler_random_or_zero():
  rand, zero = gen(random_non_queries=True), gen(random_non_queries=False)
  ctx = np.zeros((L,), bool)
  ctx[:2 * N] = True
  filler = lambda b: b['inputs'][(b['acc_mask'] == 0) & ~ctx]
  assert (filler(zero) == 0).all()
  # Uniform over the whole vocab (zoology), keys and values included.
  assert len(np.unique(filler(rand))) == V


def test_query_gaps_follow_the_power_law():
  # One pair: the query slot's histogram is p itself (zoology: p(gap) ∝ gap^(a-1)).
  b = gen(batch=4000, num_kv_pairs=1, power_a=0.3)
  slots = (np.argmax(b['acc_mask'], 1) - 2) // 2
  p = np.arange(1, (L - 2) // 2 + 1) ** (0.3 - 1.0)
  p /= p.sum()
  freq = np.bincount(slots, minlength=p.shape[0]) / slots.shape[0]
  np.testing.assert_allclose(freq, p, atol=0.025)
  # Several pairs, zoology's a = 0.01: the nearest slots are far more often taken
  # (expected 0.65 for the first three of 12 slots, 0.15 for the last three).
  taken = gen()['acc_mask'][:, 2 * N::2].mean(0)
  assert taken[:3].mean() > 2 * taken[-3:].mean()


def test_stream_is_a_function_of_seed_and_step_and_eval_set_is_fixed():
  c = small_config()
  config_lib.validate(c)
  mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  ds = mqar.MQAR(c, mesh)
  a, a2, b = ds.train_batch(3), mqar.MQAR(c, mesh).train_batch(3), ds.train_batch(4)
  np.testing.assert_array_equal(a['inputs'], a2['inputs'])
  assert (np.asarray(a['inputs']) != np.asarray(b['inputs'])).any()
  meta = ds.meta_val_batch(3, 8)
  assert (np.asarray(meta['inputs']) != np.asarray(a['inputs'])).any()
  e1 = mqar.eval_set_numpy(c)
  assert e1['inputs'].shape == (16, L) and e1['acc_mask'].sum() == 16 * N
  c.seed = 7  # The held-out set depends on data.eval_seed only.
  np.testing.assert_array_equal(mqar.eval_set_numpy(c)['inputs'], e1['inputs'])
  assert (np.asarray(mqar.MQAR(c, mesh).train_batch(3)['inputs']) !=
          np.asarray(a['inputs'])).any()
  c.data.eval_seed = 99
  assert (mqar.eval_set_numpy(c)['inputs'] != e1['inputs']).any()


_TWO_DEVICES = """
import jax, numpy as np
from hyena_jax import config_lib
from hyena_jax.data import mqar
c = config_lib.base_config()
c.data.update(name='mqar', seq_len=32, vocab_size=40)
c.data.mqar.num_kv_pairs = 4
c.train.global_batch_size = 8
ds = mqar.MQAR(c, jax.make_mesh((jax.device_count(),), ('data',)))
b = ds.train_batch(5)
assert len(b['inputs'].sharding.device_set) == 2
print(' '.join(map(str, np.asarray(b['inputs']).ravel())))
"""


def test_values_do_not_depend_on_the_device_count():
  res = subprocess.run([sys.executable, '-c', _TWO_DEVICES], env=helpers.cli_env(devices=2),
                       cwd=helpers.REPO, capture_output=True, text=True, timeout=120, check=False)
  assert res.returncode == 0, res.stderr[-2000:]
  c = small_config()
  c.train.global_batch_size = 8
  one = mqar.MQAR(c, jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])).train_batch(5)
  np.testing.assert_array_equal(np.array(res.stdout.split(), np.int32),
                                np.asarray(one['inputs']).ravel())


BAD = {
    'seq_too_short': (helpers.set_field('data.seq_len', 4 * N - 2), 'data.seq_len'),
    'odd_seq_len': (lambda c: c.data.update(seq_len=33) or c.model.update(l_max=33),
                    'data.seq_len'),
    'zero_pairs': (helpers.set_field('data.mqar.num_kv_pairs', 0), 'data.mqar.num_kv_pairs'),
    'too_few_keys': (helpers.set_field('data.vocab_size', 2 * N + 1), 'data.vocab_size'),
    'zero_power_a': (helpers.set_field('data.mqar.power_a', 0.0), 'data.mqar.power_a'),
    'model_vocab_small': (helpers.set_field('model.vocab_size', V - 1), 'model.vocab_size'),
    'num_eval_indivisible': (helpers.set_field('data.num_eval', 12), 'data.num_eval'),
    'l2t_on': (helpers.set_field('l2t.mode', 'static'), 'l2t.mode'),
}


def test_small_config_and_the_edges_are_valid():
  config_lib.validate(small_config(), device_count=8)
  c = small_config(vocab_size=2 * N + 2, seq_len=4 * N)
  c.model.vocab_size = 2 * N + 2
  config_lib.validate(c)
  gen(vocab_size=2 * N + 2, seq_len=4 * N, batch=4)  # And the generator runs there.


@pytest.mark.parametrize('name', sorted(BAD))
def test_bad_config_raises_one_line_naming_the_field(name):
  mutate, field = BAD[name]
  c = small_config()
  mutate(c)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c, device_count=8 if name == 'num_eval_indivisible' else 1)
  msg = str(e.value)
  assert '\n' not in msg and field in msg, msg


class _Bigram(nnx.Module):
  """The smallest model loss_fn accepts (an LM would only add compile time here)."""

  def __init__(self, rngs: nnx.Rngs):
    self.table = nnx.Param(jax.random.normal(rngs.params(), (V, V)))

  def __call__(self, tokens_BxL, *, key=None):
    del key
    return self.table[tokens_BxL]


def test_loss_fn_is_the_masked_mean_when_the_batch_has_a_loss_mask():
  graphdef, params = nnx.split(_Bigram(nnx.Rngs(0)), nnx.Param)
  b = jax.tree.map(jnp.asarray, gen())
  logits = nnx.merge(graphdef, params)(b['inputs'])
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, b['targets'])
  m = b['loss_mask']
  loss, aux = steps.loss_fn(params, graphdef, b, None)
  np.testing.assert_allclose(loss, (ce * m).sum() / m.sum(), rtol=1e-6)
  assert aux['loss'] == loss
  # Without the key: the plain mean over every token, as for recall and text.
  plain, _ = steps.loss_fn(params, graphdef, {k: b[k] for k in b if k != 'loss_mask'}, None)
  np.testing.assert_allclose(plain, ce.mean(), rtol=1e-6)
  assert abs(float(plain) - float(loss)) > 1e-4
  # Targets off the mask do not reach the loss (nor its gradient).
  moved = b | {'targets': jnp.where(m > 0, b['targets'], 7)}
  np.testing.assert_allclose(steps.loss_fn(params, graphdef, moved, None)[0], loss, rtol=1e-6)


@pytest.mark.parametrize('arg', ['64', '128,mixer=attention', '64,seed=3'])
def test_config_arguments(arg):
  c = config_lib.load_config_file(str(helpers.REPO / 'configs' / 'mqar.py'), arg)
  config_lib.validate(c)
  assert c.data.name == 'mqar' and c.data.mqar.num_kv_pairs == c.data.seq_len // 16
  with pytest.raises(ValueError, match='bad option'):
    config_lib.load_config_file(str(helpers.REPO / 'configs' / 'mqar.py'), '64,mixer=rnn')
