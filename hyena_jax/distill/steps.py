"""Distillation stages as trainer steps: `c.distill.stage` = layers (stage 1) | e2e (stage 2).

The trainer keeps its loop, checkpoints and resume; this supplies the student's initial
parameters, the teacher's (kept in the train state, so a resumed run needs no teacher source)
and the jitted step. The teacher is a run of this codebase (`distill.teacher_workdir`: its
config.json and latest checkpoint) or a Hugging Face GPT-NeoX directory (`distill.teacher_hf`).
"""

import json
import os

import jax
import jax.numpy as jnp
from absl import logging
import ml_collections
import optax
import orbax.checkpoint as ocp
from flax import nnx

from hyena_jax import config_lib
from hyena_jax.distill import losses, student as student_lib
from hyena_jax.models.lm import LM

STAGES = ('off', 'layers', 'e2e')


def run_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise config_lib.ConfigError(f'{workdir} has no config.json (not a hyena_jax workdir)')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run_params(workdir: str, model_cfg: ml_collections.ConfigDict):
  """The latest checkpoint's model parameters only (the optimizer state is not read)."""
  abstract = nnx.state(nnx.eval_shape(lambda: LM(model_cfg, rngs=nnx.Rngs(0))), nnx.Param)
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # orbax warns that a read-only manager is read-only.
  try:
    mngr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        read_only=True), item_names=('state', 'data'))
  finally:
    logging.set_verbosity(verbosity)
  step = mngr.latest_step()
  if step is None:
    raise config_lib.ConfigError(f'{directory} has no checkpoint to distil from')
  # Restored onto one device; the trainer's jitted init lays it out over the mesh.
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = {'params': jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one), abstract)}
  out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      target, partial_restore=True)))
  mngr.close()
  return out.state['params']


def teacher_model_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  d = c.distill
  if bool(d.teacher_workdir) == bool(d.teacher_hf):
    raise config_lib.ConfigError('distill: set exactly one of distill.teacher_workdir (a run of '
                                 'this codebase) and distill.teacher_hf (an HF GPT-NeoX dir)')
  if d.teacher_hf:
    from hyena_jax.models import neox_import  # pylint: disable=g-import-not-at-top
    with open(os.path.join(d.teacher_hf, 'config.json')) as f:
      return neox_import.model_config(json.load(f))
  return run_config(d.teacher_workdir).model


def validate(c: ml_collections.ConfigDict) -> None:
  d = c.distill
  if d.stage not in STAGES:
    raise config_lib.ConfigError(f'distill.stage={d.stage!r}: choose from {STAGES}')
  if d.stage == 'off':
    return
  if d.mode not in losses.MODES:
    raise config_lib.ConfigError(f'distill.mode={d.mode!r}: choose from {losses.MODES}')
  if c.model.mixer != 'hyena':
    raise config_lib.ConfigError(f'distill: model.mixer={c.model.mixer!r}; the student is hyena')
  if c.l2t.mode != 'off':
    raise config_lib.ConfigError('distill and l2t.mode cannot be combined')
  t = teacher_model_config(c)
  for k in ('d_model', 'n_layer', 'd_inner', 'vocab_size', 'residual', 'tie_embeddings'):
    if t[k] != c.model[k]:
      raise config_lib.ConfigError(f'distill: model.{k}={c.model[k]!r} differs from the '
                                   f"teacher's {t[k]!r} (the student keeps the teacher's shape)")
  if d.kl_weight < 0 or d.temperature <= 0:
    raise config_lib.ConfigError('distill.kl_weight must be >= 0 and distill.temperature > 0')


def apply_options(c: ml_collections.ConfigDict, opts: list[str], arg: str) -> None:
  """The stage configs' `KEY=VALUE` argument options (configs/distill_wikitext2.py)."""
  setters = {
      'teacher': lambda v: c.distill.update(teacher_workdir=v),
      'teacher_hf': lambda v: c.distill.update(teacher_hf=v),
      'init': lambda v: c.distill.update(init_from=v),
      'mode': lambda v: c.distill.update(mode=v),
      'attn_init': lambda v: c.distill.update(attention_init=bool(int(v))),
      'kl': lambda v: c.distill.update(kl_weight=float(v)),
      'seed': lambda v: c.update(seed=int(v)),
  }
  for opt in opts:
    k, _, v = opt.partition('=')
    if k not in setters:
      raise ValueError(f'unknown option {k!r} in {arg!r}; use {sorted(setters)}')
    setters[k](v)


class Distill:
  """init_params(), teacher_params() and train_step(state, batch) for the trainer."""

  def __init__(self, c: ml_collections.ConfigDict, graphdef, tx, lr_schedule):
    self.c, self.d, self.graphdef, self.lr_schedule = c, c.distill, graphdef, lr_schedule
    self.teacher_cfg = teacher_model_config(c)
    self.teacher_graphdef, self.abstract_teacher = nnx.split(
        nnx.eval_shape(lambda: LM(self.teacher_cfg, rngs=nnx.Rngs(0))), nnx.Param)
    n = c.model.n_layer
    self.steps_per_layer = self.d.steps_per_layer or max(c.train.num_steps // n, 1)
    abstract = nnx.state(nnx.eval_shape(lambda: LM(c.model, rngs=nnx.Rngs(0))), nnx.Param)
    labels = student_lib.param_labels(
        abstract, freeze_copied=self.d.freeze_copied and self.d.stage == 'layers')
    self.tx = optax.multi_transform({student_lib.TRAIN: tx, student_lib.FROZEN:
                                     optax.set_to_zero()}, labels)
    # Mixer-layer index of every parameter (-1: not a mixer), for the cumulative phases.
    self.layer_of = jax.tree_util.tree_map_with_path(
        lambda p, _: student_lib.mixer_layer(p), abstract)

  def teacher_params(self):
    if self.d.teacher_hf:
      from hyena_jax.models import neox_import  # pylint: disable=g-import-not-at-top
      return neox_import.load_hf(self.d.teacher_hf)[1]
    return load_run_params(self.d.teacher_workdir, self.teacher_cfg)

  def loaded_student(self):
    """distill.init_from's parameters (host I/O, outside jit), or None."""
    return load_run_params(self.d.init_from, self.c.model) if self.d.init_from else None

  def init_params(self, teacher_params):
    """The student built from the teacher (traceable: runs inside the trainer's jitted init)."""
    teacher = nnx.merge(self.teacher_graphdef, teacher_params)
    s = student_lib.build_student(teacher, self.c.model, rngs=nnx.Rngs(self.c.seed),
                                  attention_init=self.d.attention_init)
    return nnx.state(s, nnx.Param)

  def layer_at(self, step):
    return jnp.minimum(step // self.steps_per_layer, self.c.model.n_layer - 1)

  def loss(self, params, teacher_params, batch, step):
    student = nnx.merge(self.graphdef, params)
    teacher = nnx.merge(self.teacher_graphdef, teacher_params)
    tokens = batch['inputs']
    hid, mixed, t_logits = losses.teacher_activations(teacher, tokens)
    if self.d.stage == 'layers':
      layer = self.layer_at(step) if self.d.mode == 'cumulative' else None
      loss, mse = losses.layer_match_loss(student, hid, mixed, tokens, mode=self.d.mode,
                                          layer=layer)
      metrics = {f'mse_{l}': mse[l] for l in range(mse.shape[0])}
    else:
      logits = student(tokens)  # No key: no dropout, as the teacher.
      loss, parts = losses.e2e_loss(logits, batch['targets'], t_logits,
                                    kl_weight=self.d.kl_weight, temperature=self.d.temperature)
      metrics = dict(parts)
      metrics['accuracy'] = (jnp.argmax(logits, -1) == batch['targets']).mean()
    return loss, metrics | {'loss': loss}

  def train_step(self, state, batch):
    step = state['step']
    (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(
        state['params'], state['teacher'], batch, step)
    updates, opt_state = self.tx.update(grads, state['opt_state'], state['params'])
    if self.d.stage == 'layers' and self.d.mode == 'cumulative':
      # Adam's momentum would keep moving earlier layers after their phase: only this one.
      layer = self.layer_at(step)
      updates = jax.tree.map(lambda u, l: jnp.where(l == layer, u, jnp.zeros_like(u)),
                             updates, self.layer_of)
      metrics['layer'] = layer
    params = optax.apply_updates(state['params'], updates)
    metrics['grad_norm'] = optax.tree.norm(grads)
    metrics['lr'] = self.lr_schedule(step)
    return state | {'step': step + 1, 'params': params, 'opt_state': opt_state}, metrics

