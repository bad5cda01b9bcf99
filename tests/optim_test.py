"""hyena_jax.optim: parameter groups, weight-decay mask, schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hyena_jax import config_lib, optim
from hyena_jax.models import LM


def _setup(learn_pos_emb=True):
  c = config_lib.base_config()
  c.data.seq_len = 16
  c.model.d_model, c.model.d_inner, c.model.hyena.filter_order = 8, 16, 8
  c.model.hyena.learn_pos_emb = learn_pos_emb
  c.optim.update(lr=1e-2, weight_decay=0.5, warmup_steps=0, filter_lr=1e-3, pos_emb_lr=1e-4)
  params = nnx.state(LM(c.model, rngs=nnx.Rngs(0)), nnx.Param)
  return c, params


def _flat(tree):
  names = lambda path: [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]
  return {'/'.join(n for n in names(p) if n != 'value'): v
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_labels():
  _, params = _setup()
  labels = _flat(jax.tree_util.tree_map_with_path(lambda p, _: optim.param_label(p), params))
  mixer = 'blocks/0/mixer/'
  assert labels[mixer + 'filter/z'] == 'pos_emb'
  assert labels[mixer + 'filter/omega'] == 'filter'
  assert labels[mixer + 'filter/mlp/1/kernel'] == 'filter'
  assert labels[mixer + 'filter/mlp_out/kernel'] == 'filter'
  assert labels[mixer + 'filter/bias'] == 'default'  # The skip B follows the global group.
  assert labels[mixer + 'in_proj/kernel'] == 'default'
  assert labels['embed/embedding'] == 'default'


def test_weight_decay_only_on_default_group_kernels_and_group_lrs():
  c, params = _setup()
  tx, _ = optim.make(c, params)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  moved = {k: float(jnp.abs(v).max()) for k, v in _flat(updates).items()}
  p = _flat(params)
  mixer = 'blocks/0/mixer/'
  # AdamW with zero gradient: update = -lr * wd * param for decayed leaves, 0 otherwise.
  np.testing.assert_allclose(_flat(updates)[mixer + 'in_proj/kernel'],
                             -1e-2 * 0.5 * p[mixer + 'in_proj/kernel'], rtol=1e-5)
  assert moved[mixer + 'short_kernel'] > 0
  for name in ('in_proj/bias', 'filter/bias', 'filter/omega', 'filter/mlp/0/kernel', 'filter/z'):
    assert moved[mixer + name] == 0.0, name
  assert moved['embed/embedding'] == 0.0 and moved['blocks/0/ln1/scale'] == 0.0
  # Own learning rates: a unit gradient moves each group by its lr on the first Adam step.
  ones = jax.tree.map(jnp.ones_like, params)
  c.optim.weight_decay = 0.0
  tx, _ = optim.make(c, params)
  u = _flat(tx.update(ones, tx.init(params), params)[0])
  np.testing.assert_allclose(u[mixer + 'in_proj/bias'], -1e-2, rtol=1e-3)
  np.testing.assert_allclose(u[mixer + 'filter/mlp/0/bias'], -1e-3, rtol=1e-3)
  np.testing.assert_allclose(u[mixer + 'filter/z'], -1e-4, rtol=1e-3)


def test_warmup_cosine_schedule():
  c = config_lib.base_config()
  c.optim.update(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
  c.train.num_steps = 110
  s = optim.schedule(c, 1.0)
  assert float(s(0)) == 0.0
  np.testing.assert_allclose(float(s(10)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(s(110)), 0.1, rtol=1e-5)
  assert float(s(60)) < 1.0
