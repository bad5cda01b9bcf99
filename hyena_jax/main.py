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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from hyena_jax import sharding, train  # pylint: disable=g-import-not-at-top
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  sharding.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id, auto=FLAGS.distributed)
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (config_lib.ConfigError, train.NonFiniteError) as e:
    print(f'hyena_jax: error: {e}', file=sys.stderr, flush=True)
    sys.exit(2 if isinstance(e, config_lib.ConfigError) else 1)


if __name__ == '__main__':
  app.run(main)
