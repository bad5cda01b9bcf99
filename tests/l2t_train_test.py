"""L2T through the trainer: exact resume of every piece of L2T state, the meta-validation split,
and one-line config errors."""

import json
import shutil

import chex
import jax
import numpy as np
import pytest

import helpers
from hyena_jax import config_lib, sharding, train
from hyena_jax.data import text

MODES = {
    'paper': {'l2t.mode': 'paper', 'l2t.paper.memory_size': 20},
    'meta_adam': {'l2t.mode': 'meta', 'l2t.meta.unroll': 2, 'l2t.meta.every': 3},
    'meta_lstm': {'l2t.mode': 'meta', 'l2t.meta.unroll': 2, 'l2t.meta.every': 3,
                  'l2t.meta.teacher': 'lstm'},
}


def _tiny(mode: str, num_steps: int = 8):
  c = config_lib.load_config_file(str(helpers.REPO / helpers.DEFAULT_CONFIG))
  c.data.update(seq_len=16, num_eval=8)
  c.model.update(d_model=16, d_inner=32, n_layer=1)
  c.l2t.dln.update(hidden=8, mlp_width=16, mlp_layers=1)
  c.optim.eps_root = 1e-12
  c.train.update(global_batch_size=8, num_steps=num_steps, checkpoint_every_steps=4,
                 keep_checkpoints=5, eval_every_steps=4, log_every_secs=1e9)
  for k, v in MODES[mode].items():
    section, *rest = k.split('.')
    node = c[section]
    for r in rest[:-1]:
      node = node[r]
    node[rest[-1]] = v
  return c


def _train_rows(workdir):
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return {r['step']: r for r in rows if r['split'] == 'train'}


# meta_adam's resume is left out for CI time: meta_lstm resumes the same meta cycle (plus
# the LSTM teacher's state); tests/l2t_meta_test.py covers the Adam teacher's step.
@pytest.mark.parametrize('mode', ['paper', 'meta_lstm'])
def test_l2t_state_survives_checkpoint_and_resume_exactly(tmp_path, mode):
  c = _tiny(mode)
  full = tmp_path / 'full'
  train.train_and_evaluate(c, str(full))
  saved = helpers.checkpoint_steps(full)
  first = saved[0]
  assert 0 < first < 8 and saved[-1] == 8, saved
  resumed = tmp_path / 'resumed'
  shutil.copytree(full, resumed)
  for s in saved[1:]:  # Back to the first checkpoint, as after a crash there.
    shutil.rmtree(resumed / 'checkpoints' / str(s))
  report = train.train_and_evaluate(c, str(resumed))
  assert report['steps_this_run'] == 8 - first
  a, b = (helpers.restore_checkpoint_state(d, 8) for d in (full, resumed))
  assert set(a['l2t']) == set(b['l2t']) and a['l2t']
  chex.assert_trees_all_equal(a, b)  # Student, DLN, teacher, memory, optimizer states.
  ra, rb = _train_rows(full), _train_rows(resumed)
  assert sorted(ra) == sorted(rb)
  for s in ra:
    assert ra[s]['loss'] == rb[s]['loss'], (s, ra[s], rb[s])
  if mode.startswith('meta'):
    assert any('heldout_loss' in r for r in ra.values())
    assert 0.05 <= min(r['w_mean'] for r in ra.values()) <= 0.95


def test_static_mode_at_w0_is_plain_cross_entropy(tmp_path):
  base = _tiny('paper', num_steps=3)
  base.l2t.mode = 'off'
  static = _tiny('paper', num_steps=3)
  static.l2t.update(mode='static', static_w=0.0)
  train.train_and_evaluate(base, str(tmp_path / 'off'))
  train.train_and_evaluate(static, str(tmp_path / 'static'))
  ra, rb = _train_rows(tmp_path / 'off'), _train_rows(tmp_path / 'static')
  for s in ra:
    np.testing.assert_allclose(ra[s]['loss'], rb[s]['loss'], rtol=1e-6)


def test_meta_val_split_is_the_tail_of_train_and_never_trained_on(tmp_path):
  from text_data_test import VOCAB, _write_corpus  # pylint: disable=g-import-not-at-top
  files = _write_corpus(tmp_path / 'files')
  c = config_lib.base_config()
  c.data.update(name='text_files', data_dir=str(tmp_path / 'tfds'), seq_len=16,
                meta_val_fraction=0.1)
  c.data.files.update(files)
  c.model.vocab_size = VOCAB
  c.train.global_batch_size = 8
  mesh = sharding.make_mesh()
  ds = text.TextDataset(c, mesh)
  full = np.asarray(text.token_streams(c)[1]['train'])
  n = int(len(full) * 0.1)
  np.testing.assert_array_equal(ds.streams['meta_val'], full[len(full) - n:])
  np.testing.assert_array_equal(ds.streams['train'], full[:len(full) - n])
  b = ds.meta_val_batch(3, 8)
  rows = np.asarray(b['inputs'])
  assert rows.shape == (8, 16)
  mv = np.asarray(ds.streams['meta_val'])
  starts = [int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(mv, 16) == r,
                                      axis=1))[0]) for r in rows]
  assert all(s % 16 == 0 for s in starts)  # Whole meta-val windows.
  np.testing.assert_array_equal(np.asarray(ds.meta_val_batch(3, 8)['inputs']), rows)
  assert not np.array_equal(np.asarray(ds.meta_val_batch(4, 8)['inputs']), rows)


@pytest.mark.parametrize('overrides, needle', [
    ({'l2t.mode': 'bogus'}, r"^l2t\.mode='bogus' is unknown"),
    ({'l2t.mode': 'meta', 'optim.eps_root': 0.0}, r'^optim\.eps_root=0\.0: l2t\.mode=meta'),
    ({'l2t.mode': 'meta', 'optim.eps_root': 1e-12, 'l2t.meta.unroll': 5,
      'l2t.meta.every': 3}, r'^l2t\.meta\.every=3 must be >= l2t\.meta\.unroll=5'),
    ({'l2t.mode': 'meta', 'optim.eps_root': 1e-12, 'l2t.meta.teacher': 'sgd'},
     r"^l2t\.meta\.teacher='sgd'"),
    ({'l2t.mode': 'paper', 'l2t.paper.memory_size': 4}, r'^l2t\.paper\.memory_size=4 must be'),
    ({'l2t.mode': 'static', 'l2t.static_w': 1.5}, r'^l2t\.static_w=1\.5 must be in'),
    ({'l2t.mode': 'paper', 'l2t.w_min': 0.9, 'l2t.w_max': 0.1}, r'^l2t\.w_min=0\.9'),
])
def test_bad_l2t_config_is_one_line_naming_the_field(overrides, needle):
  c = _tiny('paper')
  c.l2t.mode = 'off'
  for k, v in overrides.items():
    section, *rest = k.split('.')
    node = c[section]
    for r in rest[:-1]:
      node = node[r]
    node[rest[-1]] = v
  with pytest.raises(config_lib.ConfigError, match=needle) as e:
    config_lib.validate(c)
  assert '\n' not in str(e.value)


def test_text_meta_mode_needs_a_meta_val_split():
  c = config_lib.load_config_file(str(helpers.REPO / 'configs' / 'l2t_ptb.py'), 'meta1')
  c.data.meta_val_fraction = 0.0
  with pytest.raises(config_lib.ConfigError, match=r'^l2t\.mode=meta needs a meta-validation'):
    config_lib.validate(c)


def test_every_l2t_ptb_arm_is_valid_and_sized_like_the_paper_student():
  from hyena_jax.l2t import steps as l2t_steps  # pylint: disable=g-import-not-at-top
  cfg = str(helpers.REPO / 'configs' / 'l2t_ptb.py')
  counts = {}
  for arm in ('transformer', 'ce', 'static25', 'static50', 'paper', 'meta1', 'meta5lstm'):
    c = config_lib.load_config_file(cfg, f'{arm},seed=1')
    config_lib.validate(c)
    assert c.seed == 1 and c.data.meta_val_fraction == 0.05 and c.l2t.mode in l2t_steps.MODES
    _, p = train.model_graphdef_and_abstract_params(c)
    counts[arm] = train.num_params(p)
  assert counts['ce'] == 4_790_016
  assert abs(counts['transformer'] - counts['ce']) / counts['ce'] < 0.002
  with pytest.raises(ValueError, match='unknown arm'):
    config_lib.load_config_file(cfg, 'nope')


def test_meta_mode_on_eight_devices_matches_one_device(tmp_path):
  """The meta step (stacked K batches sharded on 'data', held-out batch, LSTM teacher) is
  data parallel like the plain step: same per-step numbers on 1 and 8 fake devices."""
  run = helpers.TINY + ('--config.train.num_steps=7', '--config.train.eval_every_steps=7',
                        '--config.l2t.mode=meta', '--config.l2t.meta.unroll=2',
                        '--config.l2t.meta.every=3', '--config.l2t.meta.teacher=lstm',
                        '--config.optim.eps_root=1e-12', '--config.l2t.dln.mlp_width=16')
  procs = [helpers.CliProcess(tmp_path / str(n), *run, log_dir=tmp_path, name=str(n), devices=n)
           for n in (1, 8)]
  with helpers.killing_on_exit(*procs):
    assert helpers.wait_all(*procs) == [0, 0], [p.describe() for p in procs]
  for key in ('loss', 'w_mean', 'heldout_loss'):
    one, eight = ({r['step']: r[key] for r in helpers.read_metrics(tmp_path / str(n))
                   if r['split'] == 'train' and key in r} for n in (1, 8))
    assert sorted(one) == sorted(eight) and len(one) >= 2, (key, one, eight)
    np.testing.assert_allclose([eight[s] for s in sorted(one)], [one[s] for s in sorted(one)],
                               rtol=0, atol=1e-5, err_msg=key)
