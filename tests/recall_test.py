"""hyena_jax.data.recall: the associative-recall generator."""

import jax
import numpy as np

from hyena_jax import config_lib
from hyena_jax.data import recall


def test_sequence_structure_and_answer():
  V, L = 10, 20
  b = jax.tree.map(np.asarray, recall.make_batch(jax.random.PRNGKey(0), 64, L, V))
  inputs, targets = b['inputs'], b['targets']
  assert inputs.shape == targets.shape == (64, L)
  np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])  # Next-token targets.
  assert (inputs[:, -2] == V).all()  # Query marker, then the query key.
  for seq, tgt in zip(inputs, targets):
    keys, vals = seq[0:L - 2:2], seq[1:L - 2:2]
    assert (keys < V // 2).all() and (vals >= V // 2).all() and (vals < V).all()
    kv = {}
    for k, v in zip(keys, vals):
      assert kv.setdefault(k, v) == v  # One value per key within a sequence.
    assert seq[-1] in kv and tgt[-1] == kv[seq[-1]]  # The answer is the queried key's value.
  np.testing.assert_array_equal(b['acc_mask'][:, -1], 1.0)
  assert b['acc_mask'][:, :-1].sum() == 0


def test_deterministic_and_eval_set_fixed():
  a = recall.make_batch(jax.random.PRNGKey(3), 4, 16, 12)
  b = recall.make_batch(jax.random.PRNGKey(3), 4, 16, 12)
  np.testing.assert_array_equal(np.asarray(a['inputs']), np.asarray(b['inputs']))
  c = config_lib.base_config()
  c.data.update(seq_len=16, num_eval=40)
  e1, e2 = recall.eval_set_numpy(c), recall.eval_set_numpy(c)
  assert e1['inputs'].shape == (40, 16)
  np.testing.assert_array_equal(e1['inputs'], e2['inputs'])
  c.seed = 7  # The held-out set depends on data.eval_seed only, not the training seed.
  np.testing.assert_array_equal(recall.eval_set_numpy(c)['inputs'], e1['inputs'])
