"""The L2T meta-gradient: finite differences (float64), the K=1 SGD closed form, and the
first-order shortcut giving exactly zero."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hyena_jax import config_lib, optim, train
from hyena_jax.l2t import dln as dln_lib
from hyena_jax.l2t import steps as l2t_steps

B, L, V = 4, 8, 13  # V pads to 16: the padded logit rows must stay out of every term.


def _config(dtype='float64'):
  c = config_lib.base_config()
  c.data.seq_len = L
  m = c.model
  m.update(vocab_size=V, d_model=8, n_layer=1, d_inner=16, dtype=dtype, embed_dropout=0.1)
  c.optim.update(warmup_steps=0, lr=1e-2, eps_root=1e-12)
  c.train.num_steps = 100
  c.l2t.update(mode='meta', lam=0.1)
  c.l2t.dln.update(hidden=4, mlp_width=8, mlp_layers=1)
  return c


def _to64(tree):
  return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating)
                      else x, tree)


def _batch(key):
  x = jax.random.randint(key, (B, L + 1), 0, V)
  return {'inputs': x[:, :-1], 'targets': x[:, 1:], 'acc_mask': jnp.ones((B, L))}


def _params(c):
  """(graphdef, params) of the LM, as the trainer builds them: under jit (eager init compiles
  each op, ~10 s)."""
  return train.model_graphdef_and_abstract_params(c)[0], jax.jit(lambda: train.init_params(c))()


def _setup(tx_kind: str, K: int, dtype: str = 'float64'):
  c = _config(dtype)
  graphdef, params = _params(c)
  params = _to64(params) if dtype == 'float64' else params
  tx = optax.sgd(0.3) if tx_kind == 'sgd' else optim.make(c, params)[0]
  l2t = l2t_steps.L2T(c, graphdef, tx, lambda s: 0.0)

  @jax.jit
  def random_phi():
    phi = l2t.init(jax.random.PRNGKey(1))['dln']
    # Random DLN heads (they start at zero): every path from phi to w is exercised.
    leaves, tdef = jax.tree.flatten(phi)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    phi = jax.tree.unflatten(tdef, [x + 0.5 * jax.random.normal(k, x.shape)
                                    for x, k in zip(leaves, keys)])
    return _to64(phi) if dtype == 'float64' else phi

  phi = random_phi()
  opt_state = jax.jit(tx.init)(params)
  keys = jax.random.split(jax.random.PRNGKey(3), K + 3)
  if tx_kind != 'sgd':  # Two warm-up steps: Adam's first step is sign(g) (scale-free in w).
    update = jax.jit(l2t._student_update)  # Eager, the two steps took ~30 s of CI time.
    for i in range(2):
      params, opt_state, *_ = update(params, opt_state, _batch(keys[i]), keys[i], phi)
  batches = jax.tree.map(lambda *x: jnp.stack(x), *[_batch(k) for k in keys[2:2 + K]])
  return l2t, phi, params, opt_state, batches, _batch(keys[-1])


def _directional_fd(f, phi, d, eps):
  plus = jax.tree.map(lambda p, q: p + eps * q, phi, d)
  minus = jax.tree.map(lambda p, q: p - eps * q, phi, d)
  return (f(plus) - f(minus)) / (2 * eps)


def _dot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# K = 2: more than one differentiable step (K = 1 has its closed form below, a stronger check);
# K = 3 costs CI a minute more for no other path.
@pytest.mark.parametrize('K', [2])
def test_meta_gradient_equals_central_finite_differences_float64(K):
  with jax.enable_x64(True):
    l2t, phi, params, opt_state, batches, val = _setup('adamw', K)
    f = jax.jit(lambda p: l2t.meta_loss(p, params, opt_state, batches, val, 0)[0])
    _, g, _ = jax.jit(lambda p: l2t.meta_grad(p, params, opt_state, batches, val))(phi)
    assert float(optax.tree.norm(g)) > 1e-6
    leaves, tdef = jax.tree.flatten(phi)
    for seed in range(3):
      ks = jax.random.split(jax.random.PRNGKey(10 + seed), len(leaves))
      d = jax.tree.unflatten(tdef, [jax.random.normal(k, x.shape, x.dtype)
                                    for x, k in zip(leaves, ks)])
      fd = float(_directional_fd(f, phi, d, 1e-5))
      np.testing.assert_allclose(float(_dot(g, d)), fd, rtol=1e-6, atol=1e-10)


def test_k1_sgd_meta_gradient_equals_the_closed_form():
  with jax.enable_x64(True):
    eta, lam = 0.3, 0.1
    l2t, phi, params, opt_state, batches, val = _setup('sgd', 1)
    # Jitted, every eager-dispatched piece below cost CI tens of seconds.
    _, g, (params_1, _, _) = jax.jit(l2t.meta_grad)(phi, params, opt_state, batches, val)
    batch = jax.tree.map(lambda x: x[0], batches)
    key = jax.random.fold_in(l2t.base_key, 0)  # The unroll's dropout key for step 0.

    def per_seq(p):
      logits = nnx.merge(l2t.graphdef, p)(batch['inputs'], key=key)
      ce_B, reg_B = dln_lib.per_sequence_terms(logits, batch['targets'], V)
      return lam * reg_B - ce_B

    grad_val = jax.jit(jax.grad(l2t.heldout_loss))(params_1, val)
    jac = jax.jit(jax.jacrev(per_seq))(params)  # (B,) -> per-sequence gradients
    dL_dw = -(eta / B) * jnp.stack([_dot(grad_val, jax.tree.map(lambda j: j[b], jac))
                                    for b in range(B)])

    @jax.jit
    def want_fn(dL_dw):
      logits0 = nnx.merge(l2t.graphdef, params)(batch['inputs'], key=key)
      f = l2t.features(logits0, batch['targets'])
      _, vjp = jax.vjp(lambda p: nnx.merge(l2t.dln_graphdef, p)(f), phi)
      return vjp(dL_dw)[0]

    want = want_fn(dL_dw)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-12)
    assert float(optax.tree.norm(want)) > 1e-8


@pytest.mark.parametrize('K', [2])  # One K: the stop is per step, and CI time is short.
def test_stopping_the_gradient_through_the_student_step_gives_exactly_zero(K):
  l2t, phi, params, opt_state, batches, val = _setup('adamw', K, 'float32')
  # Jitted: the eager meta-gradient dispatches thousands of small ops (minutes on 2 cores).
  grad = jax.jit(lambda p, stop: l2t.meta_grad(p, params, opt_state, batches, val,
                                                stop_student_grad=stop), static_argnums=1)
  _, g, _ = grad(phi, False)
  _, g0, _ = grad(phi, True)
  assert float(optax.tree.norm(g)) > 0
  for x in jax.tree.leaves(g0):
    assert np.all(np.asarray(x) == 0.0)


# Adam only here: the LSTM teacher's meta step runs in tests/l2t_train_test.py (8 devices, resume).
@pytest.mark.parametrize('teacher', ['adam'])
def test_meta_step_commits_k_student_steps_and_moves_phi(teacher):
  c = _config('float32')
  c.l2t.meta.update(unroll=2, every=2, teacher=teacher)
  graphdef, params = _params(c)
  tx, sched = optim.make(c, params)
  l2t = l2t_steps.L2T(c, graphdef, tx, sched)
  state = jax.jit(lambda p: {'step': jnp.zeros((), jnp.int32), 'params': p,
                             'opt_state': tx.init(p), 'l2t': l2t.init(jax.random.PRNGKey(0))})(
                                 params)
  keys = jax.random.split(jax.random.PRNGKey(4), 3)
  batches = jax.tree.map(lambda *x: jnp.stack(x), _batch(keys[0]), _batch(keys[1]))
  new, m = jax.jit(l2t.meta_step)(state, batches, _batch(keys[2]))
  assert int(new['step']) == 2
  # The committed student is the unroll's theta_K: two plain steps with the old phi
  # (adam teacher; the lstm teacher's second unroll uses the updated phi).
  p, o = state['params'], state['opt_state']
  phi = state['l2t']['dln'] if teacher == 'adam' else new['l2t']['dln']
  update = jax.jit(l2t._student_update)
  for k in range(2):
    p, o, *_ = update(p, o, jax.tree.map(lambda x: x[k], batches),
                      jax.random.fold_in(l2t.base_key, k), phi)
  for a, b in zip(jax.tree.leaves(new['params']), jax.tree.leaves(p)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5)
  moved = optax.tree.norm(jax.tree.map(lambda a, b: a - b, new['l2t']['dln'],
                                       state['l2t']['dln']))
  assert float(moved) > 0 and np.isfinite(float(m['heldout_loss']))
  assert 0.05 <= float(m['w_mean']) <= 0.95
