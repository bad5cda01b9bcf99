"""AdamW with warmup + cosine, global-norm clipping, and safari's parameter groups.

Groups (by parameter path):
  filter:  the implicit filter's MLP and its shared omega -> optim.filter_lr, filter_weight_decay
  pos_emb: the filter's positional features z (when learned) -> optim.pos_emb_lr, no decay
  default: everything else -> optim.lr; weight decay on dense/conv kernels only (not biases,
           LayerNorm, embedding or the Hyena skip B), the grouping safari's LM configs use.
"""

import jax
import ml_collections
import optax


def _path_names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def param_label(path) -> str:
  names = _path_names(path)
  if 'filter' in names:
    if names[-1] == 'z' or names[-2:] == ('z', 'value'):
      return 'pos_emb'
    if any(n in names for n in ('mlp', 'mlp_out', 'omega')):
      return 'filter'
  return 'default'


def decays(path) -> bool:
  names = [n for n in _path_names(path) if n != 'value']
  return names[-1] in ('kernel', 'short_kernel')


def schedule(c: ml_collections.ConfigDict, peak_lr: float) -> optax.Schedule:
  o, n = c.optim, c.train.num_steps
  warmup = min(o.warmup_steps, n - 1)
  if warmup <= 0:
    return optax.cosine_decay_schedule(peak_lr, n, alpha=o.min_lr_ratio)
  return optax.warmup_cosine_decay_schedule(0.0, peak_lr, warmup, n, peak_lr * o.min_lr_ratio)


def make(c: ml_collections.ConfigDict, params) -> tuple[optax.GradientTransformation,
                                                        optax.Schedule]:
  """Returns (tx, the default group's lr schedule)."""
  o = c.optim
  labels = jax.tree_util.tree_map_with_path(lambda p, _: param_label(p), params)
  decay_mask = jax.tree_util.tree_map_with_path(lambda p, _: decays(p), params)
  adamw = lambda lr, wd, mask: optax.adamw(schedule(c, lr), o.b1, o.b2, o.eps, o.eps_root,
                                           weight_decay=wd, mask=mask)
  groups = {
      'default': adamw(o.lr, o.weight_decay, decay_mask),
      'filter': adamw(o.filter_lr or o.lr, o.filter_weight_decay, None),
      'pos_emb': adamw(o.pos_emb_lr or o.lr, 0.0, None),
  }
  tx = optax.multi_transform(groups, labels)
  if o.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx, schedule(c, o.lr)
