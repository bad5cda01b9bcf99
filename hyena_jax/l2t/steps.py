"""L2T-Hyena training steps: pure functions over pytrees, jitted and sharded by the Trainer.

Modes (`l2t.mode`):
  static  (1 - w) CE + w lam R with one fixed w (the control every L2T claim needs).
  paper   w_b = DLN(features_b), detached for the student; DLN and a memory teacher are trained
          every step on the official code's side objective (hyena_jax/l2t/teachers.py).
  meta    w_b = DLN_phi(features_b); every `meta.every` student steps a meta step unrolls K
          differentiable optax steps of the student on the DLN-weighted loss and takes
          d CE_heldout(theta_K(phi)) / d phi, the held-out batch drawn from a meta-validation
          split carved from the training data. The unrolled student is committed (the K
          steps are real training steps), as L2T-DLN does. The teacher is Adam on phi or a
          coordinatewise LSTM trained through a second unroll from the same theta_0.

The meta-gradient is exact (tested against finite differences): phi reaches theta_K through
every w_k, including w_k's dependence on the student's own predictions at theta_k.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from hyena_jax.l2t import dln as dln_lib
from hyena_jax.l2t import features, teachers

MODES = ('off', 'static', 'paper', 'meta')


def _mean_std(x):
  return jnp.mean(x), jnp.std(x)


class L2T:
  """Built once per run; holds graphdefs and optimizers. Methods are pure in their arrays."""

  def __init__(self, c: ml_collections.ConfigDict, student_graphdef, tx, lr_schedule):
    l = c.l2t
    self.c, self.l, self.mode = c, l, l.mode
    self.graphdef, self.tx, self.lr_schedule = student_graphdef, tx, lr_schedule
    self.vocab = c.model.vocab_size
    self.base_key = jax.random.PRNGKey(c.seed)
    if self.mode in ('paper', 'meta'):
      self.dln_graphdef, _ = nnx.split(nnx.eval_shape(lambda: self._dln(nnx.Rngs(0))), nnx.Param)
    n = c.train.num_steps
    if self.mode == 'paper':
      p = l.paper
      self.teacher_graphdef, _ = nnx.split(nnx.eval_shape(
          lambda: teachers.MemoryTeacher(p.teacher_width, p.teacher_out_bias,
                                         rngs=nnx.Rngs(0))), nnx.Param)
      adamw = lambda lr, wd, clip: optax.chain(
          optax.clip_by_global_norm(clip),
          optax.adamw(optax.cosine_decay_schedule(lr, n), weight_decay=wd))
      self.dln_tx = adamw(p.dln_lr, p.dln_weight_decay, p.dln_grad_clip)
      self.teacher_tx = adamw(p.teacher_lr, p.teacher_weight_decay, p.teacher_grad_clip)
    if self.mode == 'meta':
      m = l.meta
      self.K = m.unroll
      self.meta_tx = optax.chain(optax.clip_by_global_norm(m.grad_clip), optax.adam(m.lr))
      self.psi_tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(m.lstm_lr))

  def _dln(self, rngs):
    d = self.l.dln
    return dln_lib.DLN(d.hidden, d.mlp_width, d.mlp_layers, w_min=self.l.w_min,
                       w_max=self.l.w_max, rngs=rngs)

  # ------------------------------------------------------------------ state

  def init(self, key: jax.Array) -> dict:
    """The 'l2t' subtree of the training state (empty for off/static)."""
    k_dln, k_teacher = jax.random.split(key)
    if self.mode not in ('paper', 'meta'):
      return {}
    phi = nnx.state(self._dln(nnx.Rngs(k_dln)), nnx.Param)
    if self.mode == 'paper':
      p = self.l.paper
      teacher = nnx.state(teachers.MemoryTeacher(p.teacher_width, p.teacher_out_bias,
                                                 rngs=nnx.Rngs(k_teacher)), nnx.Param)
      return {'dln': phi, 'dln_opt': self.dln_tx.init(phi), 'teacher': teacher,
              'teacher_opt': self.teacher_tx.init(teacher),
              'memory': teachers.memory_init(p.memory_size, self.c.data.seq_len,
                                             features.NUM_FEATURES)}
    out = {'dln': phi}
    if self.l.meta.teacher == 'adam':
      out['meta_opt'] = self.meta_tx.init(phi)
    else:
      psi = teachers.lstm_init(k_teacher, self.l.meta.lstm_hidden)
      out.update(psi=psi, psi_opt=self.psi_tx.init(psi),
                 hc=teachers.lstm_state_init(ravel_pytree(phi)[0].shape[0],
                                             self.l.meta.lstm_hidden),
                 history=jnp.zeros((teachers.HISTORY,)), history_count=jnp.zeros((), jnp.int32))
    return out

  # ------------------------------------------------------------------ student loss

  def features(self, logits, targets):
    fn = (features.token_features_inverted_mask if self.l.paper_mask_bug
          else features.token_features)
    return features.standardize_per_sequence(fn(logits, targets, self.vocab))

  def weights(self, logits, targets, phi):
    """(B,) w_b. A function of the logits too, so the meta-gradient for K > 1 follows
    phi -> theta_k -> features_k -> w_k; the student's own gradient holds w fixed."""
    if self.mode == 'static':
      return jnp.full(logits.shape[:1], self.l.static_w, jnp.float32)
    w_B = nnx.merge(self.dln_graphdef, phi)(self.features(logits, targets))
    # The official code detaches w; paper mode's DLN learns only from its side objective.
    return jax.lax.stop_gradient(w_B) if self.mode == 'paper' else w_B

  def _head_loss(self, logits, w_B, batch):
    ce_B, reg_B = dln_lib.per_sequence_terms(logits, batch['targets'], self.vocab)
    loss = dln_lib.weighted_loss(ce_B, reg_B, w_B, self.l.lam)
    correct = (jnp.argmax(logits[..., :self.vocab], -1) == batch['targets']).astype(jnp.float32)
    mask = batch['acc_mask']
    w_mean, w_std = _mean_std(w_B)
    aux = {'ce': ce_B.mean(), 'reg': reg_B.mean(), 'w_mean': w_mean, 'w_std': w_std,
           'accuracy': (correct * mask).sum() / jnp.maximum(mask.sum(), 1.0)}
    return loss, (aux, ce_B)

  def student_grad(self, params, batch, key, phi):
    """(loss, aux, ce_B, d loss / d params) with w held fixed in the derivative.

    w is an explicit argument of the head loss, so d/dparams skips it, while an outer
    derivative (the meta-gradient) sees every path from phi to the gradient.
    """
    logits, vjp = jax.vjp(lambda p: nnx.merge(self.graphdef, p)(batch['inputs'], key=key),
                          params)
    w_B = self.weights(logits, batch['targets'], phi)
    (loss, (aux, ce_B)), dlogits = jax.value_and_grad(self._head_loss, has_aux=True)(
        logits, w_B, batch)
    return loss, aux, ce_B, logits, vjp(dlogits)[0]

  def _student_update(self, params, opt_state, batch, key, phi):
    loss, aux, ce_B, logits, g = self.student_grad(params, batch, key, phi)
    updates, opt_state = self.tx.update(g, opt_state, params)
    metrics = aux | {'loss': loss, 'grad_norm': optax.tree.norm(g)}
    return optax.apply_updates(params, updates), opt_state, metrics, logits, ce_B

  # ------------------------------------------------------------------ plain step

  def train_step(self, state, batch):
    step, l2 = state['step'], dict(state.get('l2t', {}))
    key = jax.random.fold_in(self.base_key, step)
    params, opt_state, metrics, logits, ce_B = self._student_update(
        state['params'], state['opt_state'], batch, key, l2.get('dln'))
    if self.mode == 'paper':
      f = jax.lax.stop_gradient(self.features(logits, batch['targets']))
      l2, side = self._paper_update(l2, f, ce_B, jax.random.fold_in(key, 1))
      metrics |= side
    metrics['lr'] = self.lr_schedule(step)
    new = {'step': step + 1, 'params': params, 'opt_state': opt_state}
    return (new | {'l2t': l2}) if 'l2t' in state else new, metrics

  def _paper_update(self, l2, f, ce_B, key):
    mem = teachers.memory_write(l2['memory'], f, jax.lax.stop_gradient(ce_B))
    f_mem, ce_mem = teachers.memory_sample(mem, key, ce_B.shape[0])

    def side(phi, teacher):
      return teachers.paper_side_loss(nnx.merge(self.dln_graphdef, phi),
                                      nnx.merge(self.teacher_graphdef, teacher), f_mem, ce_mem)

    (_, aux), (g_phi, g_t) = jax.value_and_grad(side, argnums=(0, 1), has_aux=True)(
        l2['dln'], l2['teacher'])
    u, dln_opt = self.dln_tx.update(g_phi, l2['dln_opt'], l2['dln'])
    ut, teacher_opt = self.teacher_tx.update(g_t, l2['teacher_opt'], l2['teacher'])
    l2 = {'dln': optax.apply_updates(l2['dln'], u), 'dln_opt': dln_opt,
          'teacher': optax.apply_updates(l2['teacher'], ut), 'teacher_opt': teacher_opt,
          'memory': mem}
    return l2, aux | {'dln_grad_norm': optax.tree.norm(g_phi)}

  # ------------------------------------------------------------------ meta step

  def unroll(self, params, opt_state, phi, batches_K, step0, stop_student_grad: bool = False):
    """K differentiable student steps (lax.scan, rematerialised per step)."""

    def body(carry, xs):
      params, opt_state = carry
      batch, k = xs
      key = jax.random.fold_in(self.base_key, step0 + k)
      params, opt_state, m, _, _ = self._student_update(params, opt_state, batch, key, phi)
      if stop_student_grad:  # Test hook: the first-order shortcut, which must give zero.
        params = jax.lax.stop_gradient(params)
      return (params, opt_state), m

    K = jax.tree.leaves(batches_K)[0].shape[0]
    # Rematerialise each step for K > 1 (memory flat in K); at K = 1 it would only recompute.
    (params, opt_state), ms = jax.lax.scan(jax.checkpoint(body) if K > 1 else body,
                                           (params, opt_state), (batches_K, jnp.arange(K)))
    return params, opt_state, jax.tree.map(jnp.mean, ms)

  def heldout_loss(self, params, batch):
    logits = nnx.merge(self.graphdef, params)(batch['inputs'])
    ce_B, _ = dln_lib.per_sequence_terms(logits, batch['targets'], self.vocab)
    return ce_B.mean()

  def meta_loss(self, phi, params, opt_state, batches_K, val_batch, step0,
                stop_student_grad: bool = False):
    params_K, opt_K, ms = self.unroll(params, opt_state, phi, batches_K, step0,
                                      stop_student_grad)
    return self.heldout_loss(params_K, val_batch), (params_K, opt_K, ms)

  def meta_grad(self, phi, params, opt_state, batches_K, val_batch, step0=0,
                stop_student_grad: bool = False):
    """(held-out loss, d held-out / d phi, (params_K, opt_state_K, mean inner metrics))."""
    (lv, aux), g = jax.value_and_grad(self.meta_loss, has_aux=True)(
        phi, params, opt_state, batches_K, val_batch, step0, stop_student_grad)
    return lv, g, aux

  def meta_step(self, state, batches_K, val_batch):
    """Advances the student K steps and updates the DLN (and the LSTM teacher)."""
    step, l2 = state['step'], dict(state['l2t'])
    phi = l2['dln']
    lv, g_phi, (params, opt_state, ms) = self.meta_grad(
        phi, state['params'], state['opt_state'], batches_K, val_batch, step)
    extra = {'heldout_loss': lv, 'meta_grad_norm': optax.tree.norm(g_phi)}
    if self.l.meta.teacher == 'adam':
      u, l2['meta_opt'] = self.meta_tx.update(g_phi, l2['meta_opt'], phi)
      l2['dln'] = optax.apply_updates(phi, u)
    else:
      flat_phi, unravel = ravel_pytree(phi)
      flat_g = ravel_pytree(g_phi)[0]
      hist = teachers.history_features(l2['history'], l2['history_count'], lv, ms['ce'])

      def second(psi):
        delta, hc = teachers.lstm_update(psi, l2['hc'], flat_g, hist, self.l.meta.lr)
        new_phi = unravel(flat_phi + delta)
        l_new, (p_K, o_K, ms2) = self.meta_loss(new_phi, state['params'], state['opt_state'],
                                                batches_K, val_batch, step)
        return l_new, (new_phi, hc, p_K, o_K, ms2)

      (l_new, (new_phi, hc, params, opt_state, ms)), g_psi = jax.value_and_grad(
          second, has_aux=True)(l2['psi'])
      u, l2['psi_opt'] = self.psi_tx.update(g_psi, l2['psi_opt'], l2['psi'])
      l2['psi'] = optax.apply_updates(l2['psi'], u)
      l2['dln'], l2['hc'] = jax.lax.stop_gradient((new_phi, hc))
      l2['history'], l2['history_count'] = teachers.history_push(
          l2['history'], l2['history_count'], lv)
      extra |= {'heldout_loss_after': l_new, 'teacher_grad_norm': optax.tree.norm(g_psi)}
    K = jax.tree.leaves(batches_K)[0].shape[0]
    ms = dict(ms) | extra | {'lr': self.lr_schedule(step)}
    return {'step': step + K, 'params': params, 'opt_state': opt_state, 'l2t': l2}, ms
