"""Restore a training workdir's checkpoint for evaluation (hyena_jax.evaluate, lm-eval)."""

from absl import logging


def restore_checkpoint(c, workdir: str, step: int | None = None, check=None):
  """(trainer, state, step) for `step` (default latest) of `workdir`, read-only.

  Building the trainer gives the dataset (tokenizer, splits); restoring its data state
  refuses a checkpoint trained on another vocabulary. `check(trainer)` runs before the
  restore, so a wrong kind of workdir fails before anything is read.
  """
  from hyena_jax import checkpoint, config_lib, train  # pylint: disable=g-import-not-at-top
  trainer = train.Trainer(c, workdir)
  if check is not None:
    check(trainer)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # orbax warns that a read-only manager is read-only.
  try:
    ckpt = checkpoint.Checkpointer(workdir, c, read_only=True)
  finally:
    logging.set_verbosity(verbosity)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None or step not in ckpt.mngr.all_steps():
      raise config_lib.ConfigError(f'{ckpt.directory} has no checkpoint'
                                   + (f' at step {step}' if step is not None else ''))
    state, data_state = ckpt.restore(step, trainer.abstract_state)
  finally:
    ckpt.close()
  trainer.dataset.restore(data_state)
  return trainer, state, int(step)
