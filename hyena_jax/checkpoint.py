"""Orbax checkpoints in WORKDIR/checkpoints: model + optimizer state + data-iterator state.

A checkpoint is only written after the trainer has checked that the state is finite, and
orbax writes to a temporary directory that is renamed on commit, so a crash (or SIGKILL)
mid-save leaves the previous checkpoint as the latest.
"""

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

from hyena_jax import config_lib


# Fields that pick an implementation of the same function with the same parameters: a run may
# resume with another one (e.g. the reference kernels, to debug), so they are not compared.
_IMPL_FIELDS = (('attention', 'impl'), ('hyena', 'impl'), ('longhorn', 'scan'),
                ('longhorn', 'chunk'))


def _model_signature(model: dict) -> dict:
  model = json.loads(json.dumps(model))
  for group, name in _IMPL_FIELDS:
    if isinstance(model.get(group), dict):
      model[group].pop(name, None)
  return model


class Checkpointer:

  def __init__(self, workdir: str, c: ml_collections.ConfigDict, read_only: bool = False):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, 'checkpoints')
    self.mngr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else c.train.keep_checkpoints,
            create=not read_only, read_only=read_only),
        item_names=('state', 'data'))
    self._check_config(c, write=not read_only)

  def _check_config(self, c: ml_collections.ConfigDict, write: bool) -> None:
    """Refuse to resume a checkpoint with a different model (before any compile)."""
    path = os.path.join(self.workdir, 'config.json')
    if self.latest_step() is not None and os.path.exists(path):
      with open(path) as f:
        saved = _model_signature(json.load(f).get('model', {}))
      now = _model_signature(json.loads(c.model.to_json()))
      diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
      if diff:
        k = diff[0]
        raise config_lib.ConfigError(
            f'{self.workdir} holds a checkpoint of a different model: model.{k}='
            f'{saved.get(k)!r} there vs {now.get(k)!r} now (use a new --workdir)')
    if write and jax.process_index() == 0:
      os.makedirs(self.workdir, exist_ok=True)
      with open(path + '.tmp', 'w') as f:
        f.write(c.to_json_best_effort(indent=2))
      os.replace(path + '.tmp', path)

  def latest_step(self) -> int | None:
    return self.mngr.latest_step()

  def save(self, step: int, state, data_state: dict, force: bool = False) -> None:
    self.mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=force)

  def restore(self, step: int, abstract_state):
    try:
      out = self.mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise config_lib.ConfigError(
          f'checkpoint step {step} in {self.directory} could not be restored: {first}') from e
    return out.state, out.data

  def wait(self) -> None:
    self.mngr.wait_until_finished()

  def close(self) -> None:
    self.mngr.wait_until_finished()
    self.mngr.close()
