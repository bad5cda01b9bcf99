"""Test-wide JAX settings. CLI subprocesses get their device count plus TEST_XLA_FLAGS.

One persistent XLA compilation cache serves the whole session: both xdist workers, the tests'
own processes and every CLI subprocess (tests/helpers.py), so a program that several tests
compile (the same tiny model, a resumed run) is compiled once. It only skips XLA compilation;
tracing, sharding and checkpoint paths still run. The controller makes it and removes it.

The tests' programs are compiled with LLVM optimisation off (TEST_XLA_FLAGS, also given to every
CLI subprocess): the suite is compile-bound on tiny models, and this shortens the compiles of its
largest programs (the L2T meta-gradients) most. Every comparison in the suite is between
programs built the same way or within a tolerance, so it tests the same things; benchmarks and users keep full -O.
"""

import os
import shutil
import tempfile

TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
# Before the first JAX backend use, which is when XLA reads the flags.
if TEST_XLA_FLAGS not in os.environ.get('XLA_FLAGS', ''):  # xdist workers inherit it.
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + TEST_XLA_FLAGS).strip()
os.environ['HYENA_JAX_TEST_XLA_FLAGS'] = TEST_XLA_FLAGS  # For tests/helpers.py's subprocesses.

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

CACHE_ENV = 'HYENA_JAX_TEST_XLA_CACHE'

# Catch silent broadcasting bugs (nanodo does the same).
jax.config.update('jax_numpy_rank_promotion', 'raise')

# The slowest modules (each a minute or more of one worker: subprocess CLI runs, 8-device and
# 2-process jobs, L2T meta-gradients) go first, so that `-n 2` never ends on one of them while
# the other worker idles.
_SLOW_FIRST = ('l2t_train_test', 'l2t_meta_test', 'distributed_test', 'text_data_test',
               'train_test', 'distill_train_test', 'launch_test')


def pytest_configure(config):
  if not hasattr(config, 'workerinput'):  # The controller (or a run without xdist).
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix='hyena_jax_test_xla_cache_')
  jax.config.update('jax_compilation_cache_dir', os.environ[CACHE_ENV])
  # Only compiles that cost something: writing every small eager op's entry would not pay.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


def pytest_unconfigure(config):
  if not hasattr(config, 'workerinput'):
    shutil.rmtree(os.environ.pop(CACHE_ENV, ''), ignore_errors=True)


def pytest_collection_modifyitems(items):
  rank = lambda item: next((i for i, m in enumerate(_SLOW_FIRST) if item.module.__name__.endswith(m)),
                           len(_SLOW_FIRST))
  items.sort(key=rank)
