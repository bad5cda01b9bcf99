"""Distillation losses as pure functions of (student, teacher, tokens): stage 1 matches each
mixer's output with MSE, stage 2 trains end to end on cross-entropy plus a KL to the teacher.

Teacher activations are computed in the same jitted step under stop_gradient (nothing is
cached on disk, so any batch or data order works).

Stage-1 modes:
  teacher_forced  every student mixer sees the teacher's residual stream h_l^T (through the
                  student's copy of LN1); all layers train at once (MOHAWK stage 2, LoLCATs).
  cumulative      the student's own stream h_l^S, produced by its already-distilled lower
                  blocks, feeds layer l; trained bottom-up one layer after another (the paper's
                  progressive transfer): with `layer` given only that layer's loss counts, and
                  every block input is under stop_gradient, so only block l gets a gradient.
"""

import jax
import jax.numpy as jnp
import optax

MODES = ('cumulative', 'teacher_forced')


def teacher_activations(teacher, tokens_BxL: jax.Array):
  """(residual stream [h_0 .. h_n], mixer outputs [m_0 .. m_{n-1}], logits), all stop_gradient."""
  h = teacher.embed_tokens(tokens_BxL)
  hidden, mixed = [h], []
  for block in teacher.blocks:
    h, m = block(h, return_mixer_output=True)
    hidden.append(h)
    mixed.append(m)
  logits = teacher.logits(h)
  sg = jax.lax.stop_gradient
  return [sg(x) for x in hidden], [sg(x) for x in mixed], sg(logits)


def _mse(a, b) -> jax.Array:
  return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))


def layer_match_loss(student, teacher_hidden, teacher_mixed, tokens_BxL: jax.Array, *,
                     mode: str, layer=None):
  """(loss, per-layer MSE (n_layer,)): the mean over layers, or layer `layer`'s alone.

  `layer` may be traced (the trainer derives it from the step). In cumulative mode every
  block's input is under stop_gradient, so each layer's MSE trains only its own block.
  """
  if mode not in MODES:
    raise ValueError(f'distill mode {mode!r}: choose from {MODES}')
  n = len(student.blocks)
  if isinstance(layer, int) and not 0 <= layer < n:
    raise ValueError(f'layer={layer} is not in [0, {n})')
  mses = []
  h = student.embed_tokens(tokens_BxL)
  for l, block in enumerate(student.blocks):
    if mode == 'teacher_forced':
      m = block.mixer(block.ln1(teacher_hidden[l]).astype(teacher_hidden[l].dtype))
    else:
      h, m = block(jax.lax.stop_gradient(h), return_mixer_output=True)
    mses.append(_mse(m, teacher_mixed[l]))
  mse_N = jnp.stack(mses)
  loss = jnp.mean(mse_N) if layer is None else mse_N[layer]
  return loss, mse_N


def e2e_loss(student_logits_BxLxV: jax.Array, targets_BxL: jax.Array,
             teacher_logits_BxLxV: jax.Array | None = None, *, kl_weight: float = 0.0,
             temperature: float = 1.0):
  """CE + kl_weight T^2 KL(p_teacher^T || p_student^T) per token, averaged; and its parts.

  T^2 keeps the KL gradient's scale independent of T (Hinton et al.). Padding rows carry
  -1e9 in both models' logits, so they hold no probability on either side.
  """
  s = student_logits_BxLxV.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(s, targets_BxL).mean()
  if teacher_logits_BxLxV is None or kl_weight == 0.0:
    return ce, {'ce': ce, 'kl': jnp.float32(0.0)}
  t = jax.lax.stop_gradient(teacher_logits_BxLxV.astype(jnp.float32))
  log_p_t = jax.nn.log_softmax(t / temperature, -1)
  log_p_s = jax.nn.log_softmax(s / temperature, -1)
  kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), -1).mean()
  return ce + kl_weight * temperature**2 * kl, {'ce': ce, 'kl': kl}
