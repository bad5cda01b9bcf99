"""Every config in configs/ validates, builds, and trains one step (tiny overrides where needed)."""

import glob
import os

import jax
import numpy as np
import pytest

from hyena_jax import config_lib, train

from tests.models_test import load_config

CONFIG_NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(os.path.dirname(__file__), '..', 'configs', '*.py')))

# Shrink sequence length, batch and depth only: widths, vocab and filter settings stay real.
TINY = {'data.seq_len': 32, 'model.l_max': 32, 'train.global_batch_size': 2,
        'model.n_layer': 1, 'train.num_steps': 1, 'data.num_eval': 2,
        'train.checkpoint_every_steps': 1, 'train.eval_every_steps': 1,
        'data.eval_max_tokens': 256, 'eval.l2t_window': 16}
NO_DATA_HERE = {'hyena_pile_153m', 'wikitext103_hyena_125m'}  # Not obtainable offline.
LOCAL_TEXT = {'ptb_hyena', 'wikitext2_hyena', 'l2t_ptb',  # Prepared from the shared offline copies.
              'ptb_transformer', 'wikitext2_transformer', 'pythia_70m',
              'distill_wikitext2'}
NEEDS_TEACHER = {'pythia70m_to_hyena'}  # Stage configs: a teacher checkpoint is an argument.


def test_there_are_configs():
  assert {'default', 'recall_paper', 'hyena_pile_153m', 'wikitext103_hyena_125m', 'ptb_hyena',
          'wikitext2_hyena', 'ptb_transformer', 'wikitext2_transformer',
          'pythia_70m'} <= set(CONFIG_NAMES)


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_config_runs_one_step(name, tmp_path):
  c = load_config(name)
  if name == 'hyena_pile_153m':
    with pytest.raises(config_lib.ConfigError, match='no builder'):
      config_lib.validate(c)
  if name in NEEDS_TEACHER:
    with pytest.raises(config_lib.ConfigError, match='teacher'):
      config_lib.validate(c)
    return
  if name in NO_DATA_HERE:
    c.data.name = 'random_tokens'
  if name in LOCAL_TEXT:
    if not c.data.source_dir:
      pytest.skip(f'{name}: no offline copy of {c.data.name} (config_lib.shared_data)')
    c.data.data_dir = str(tmp_path / 'tfds')
  config_lib.validate(c)  # The full-size config itself is valid.
  for key, value in TINY.items():
    section, field = key.split('.')
    c[section][field] = value
  report = train.train_and_evaluate(c, str(tmp_path))
  assert report['step'] == 1
  assert np.isfinite(report['train_loss']) and np.isfinite(report['eval_loss'])
  assert jax.tree.leaves(report)  # The final report is returned and written.
  assert os.path.exists(tmp_path / 'final_report.json')
