"""Command line: python -m hyena_jax.main --config=configs/NAME.py --workdir=DIR [--config.x=v].

Re-running the same command on the same workdir resumes from its latest checkpoint.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from hyena_jax import config_lib

config_flags.DEFINE_config_file('config', None, 'Path to a configs/*.py file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and the final report.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-host runs).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-host runs).')
flags.DEFINE_integer('process_id', None, 'This process index (multi-host runs).')
flags.DEFINE_bool('distributed', False, 'jax.distributed.initialize() with auto-detection '
                  '(TPU pods, Slurm, Open MPI).')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def load_config_or_exit():
  try:
    config = FLAGS.config
    config.get('model')  # ml_collections defers a failed file load to the first access.
  except OSError as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    print(f'hyena_jax: error: cannot load --config: {lines[-1] if lines else e}',
          file=sys.stderr)
    sys.exit(2)
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = load_config_or_exit()
  from hyena_jax import sharding, train  # pylint: disable=g-import-not-at-top
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  sharding.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id, auto=FLAGS.distributed)
  try:
    train.train_and_evaluate(config, FLAGS.workdir)
  except (config_lib.ConfigError, train.NonFiniteError) as e:
    print(f'hyena_jax: error: {e}', file=sys.stderr, flush=True)
    sys.exit(2 if isinstance(e, config_lib.ConfigError) else 1)


def parse_flags(argv):
  """absl parsing, but a bad --config path or override is one line, not a traceback."""
  try:
    return FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    # ml_collections raises flags.Error (bad file, bad value) or AttributeError (unknown
    # field) with multi-line messages; the last line names the cause.
    lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    what = ' '.join(lines[:1] + lines[-1:]) if len(lines) > 1 else (lines or [''])[0]
    if isinstance(e, AttributeError):
      what = f'unknown config field {what} in {" ".join(a for a in argv if "--config." in a)}'
    print(f'hyena_jax: error: {what or type(e).__name__}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
