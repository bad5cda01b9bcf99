"""Test-wide JAX settings. Subprocess tests set their own XLA_FLAGS."""

import jax

# Catch silent broadcasting bugs (nanodo does the same).
jax.config.update('jax_numpy_rank_promotion', 'raise')

# The slowest modules (each a minute or more of one worker: subprocess CLI runs, 8-device and
# 2-process jobs, L2T meta-gradients) go first, so that `-n 2` never ends on one of them while
# the other worker idles.
_SLOW_FIRST = ('l2t_train_test', 'l2t_meta_test', 'distributed_test', 'text_data_test',
               'train_test', 'distill_train_test', 'launch_test')


def pytest_collection_modifyitems(items):
  rank = lambda item: next((i for i, m in enumerate(_SLOW_FIRST) if item.module.__name__.endswith(m)),
                           len(_SLOW_FIRST))
  items.sort(key=rank)
