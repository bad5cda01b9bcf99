"""Pure train/eval steps over pytrees. The trainer jits them with shardings; L2T differentiates them."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

State = dict[str, Any]  # {'step': int32[], 'params': nnx.State, 'opt_state': optax state}


def token_stats(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-token cross-entropy (float32) and correctness."""
  logits = logits_BxLxV.astype(jnp.float32)
  ce_BxL = optax.softmax_cross_entropy_with_integer_labels(logits, targets_BxL)
  correct_BxL = (jnp.argmax(logits, -1) == targets_BxL).astype(jnp.float32)
  return ce_BxL, correct_BxL


def loss_fn(params, graphdef, batch, key):
  logits = nnx.merge(graphdef, params)(batch['inputs'], key=key)
  ce_BxL, correct_BxL = token_stats(logits, batch['targets'])
  if 'loss_mask' in batch:  # E.g. MQAR: train on the query positions only.
    loss_mask = batch['loss_mask']
    loss = (ce_BxL * loss_mask).sum() / jnp.maximum(loss_mask.sum(), 1.0)
  else:
    loss = ce_BxL.mean()
  mask = batch['acc_mask']
  acc = (correct_BxL * mask).sum() / jnp.maximum(mask.sum(), 1.0)
  return loss, {'loss': loss, 'accuracy': acc}


def train_step(state: State, batch, *, graphdef, tx, lr_schedule, seed: int,
               inject_nan_at_step: int = -1) -> tuple[State, dict[str, jax.Array]]:
  step = state['step']
  key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, metrics), grads = grad_fn(state['params'], graphdef, batch, key)
  if inject_nan_at_step >= 0:
    # Counted in 1-based "after update" steps, as everything the trainer reports.
    poison = jnp.where(step + 1 == inject_nan_at_step, jnp.nan, 1.0)
    grads = jax.tree.map(lambda g: g * poison, grads)
    metrics['loss'] = metrics['loss'] * poison
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  metrics['grad_norm'] = optax.tree.norm(grads)
  metrics['lr'] = lr_schedule(step)
  return {'step': step + 1, 'params': params, 'opt_state': opt_state}, metrics


def eval_step(params, batch, *, graphdef) -> dict[str, jax.Array]:
  """Sums over the batch's acc_mask positions (recall: the query; text: every token)."""
  logits = nnx.merge(graphdef, params)(batch['inputs'])
  ce_BxL, correct_BxL = token_stats(logits, batch['targets'])
  mask = batch['acc_mask']
  return {'loss_sum': (ce_BxL * mask).sum(), 'correct_sum': (correct_BxL * mask).sum(),
          'count': mask.sum()}
