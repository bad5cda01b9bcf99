"""Both distillation stages in one command: stage 1 into WORKDIR/layers, then stage 2 into
WORKDIR/e2e starting from stage 1's latest checkpoint. Each stage resumes like training.

  python -m hyena_jax.distill.pipeline --config=configs/distill_wikitext2.py:layers,teacher=T \\
      --workdir=ROOT [--config.x=v ...]

The config's distill.stage is overridden per stage; --config.distill.kl_weight etc. apply to
stage 2, the layer-matching fields to stage 1.
"""

import copy
import os
import sys

from absl import app, logging

from hyena_jax import config_lib
from hyena_jax import main as cli  # Defines --config, --workdir and the multi-host flags.


def stages(config, root: str):
  """[(stage config, workdir)] for the pipeline (a pure function, for tests)."""
  out = []
  for stage in ('layers', 'e2e'):
    c = copy.deepcopy(config)
    with c.unlocked():
      c.distill.stage = stage
      if stage == 'e2e':
        c.distill.init_from = os.path.join(root, 'layers')
    out.append((c, os.path.join(root, stage)))
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = cli.load_config_or_exit()
  from hyena_jax import sharding, train  # pylint: disable=g-import-not-at-top
  F = cli.FLAGS
  if not F['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  sharding.maybe_initialize_distributed(F.coordinator_address, F.num_processes, F.process_id,
                                        auto=F.distributed)
  plan = stages(config, F.workdir)
  try:
    for c, _ in plan[:1]:
      config_lib.validate(c)  # Stage 1's config, before anything trains (stage 2 needs its output).
    for c, wd in plan:
      print(f'hyena_jax.distill: stage {c.distill.stage} -> {wd}', flush=True)
      train.train_and_evaluate(c, wd)
  except (config_lib.ConfigError, train.NonFiniteError) as e:
    print(f'hyena_jax: error: {e}', file=sys.stderr, flush=True)
    sys.exit(2 if isinstance(e, config_lib.ConfigError) else 1)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
