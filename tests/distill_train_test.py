"""The distillation stages through the trainer: teacher run -> stage 1 -> stage 2."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from hyena_jax import config_lib, train
from hyena_jax.distill import steps as distill_steps


def base(**model):
  c = config_lib.base_config()
  c.data.update(seq_len=16, vocab_size=10, num_eval=32)
  c.model.update(d_model=16, n_layer=2, d_inner=32, embed_dropout=0.0, residual='parallel',
                 gelu='exact', tie_embeddings=False, **model)
  c.model.attention.update(num_heads=2, rotary_pct=0.5)
  c.model.hyena.emb_dim = 5
  c.train.update(global_batch_size=8, num_steps=8, eval_every_steps=8,
                 checkpoint_every_steps=4, metrics_every_steps=1, log_every_secs=1e9)
  return c


def rows(workdir):
  return [json.loads(l) for l in open(workdir / 'metrics.jsonl') if '"train"' in l]


@pytest.fixture(scope='module')
def teacher_dir(tmp_path_factory):
  wd = tmp_path_factory.mktemp('teacher')
  c = base(mixer='attention')
  c.train.num_steps = 20
  train.train_and_evaluate(c, str(wd))
  return wd


def stage(teacher_dir, tmp_path, name, **d):
  c = base(mixer='hyena')
  c.distill.update(teacher_workdir=str(teacher_dir), **d)
  wd = tmp_path / name
  report = train.train_and_evaluate(c, str(wd))
  return c, wd, report


def test_cumulative_stage_trains_one_layer_per_phase_and_keeps_copies(teacher_dir, tmp_path):
  c, wd, report = stage(teacher_dir, tmp_path, 's1', stage='layers', mode='cumulative',
                        steps_per_layer=4)
  assert report['step'] == 8 and np.isfinite(report['eval_loss'])
  r = rows(wd)
  assert [x['layer'] for x in r] == [0, 0, 0, 0, 1, 1, 1, 1]
  assert r[3]['mse_0'] < r[0]['mse_0']  # the phase's own layer is learning
  teacher = distill_steps.load_run_params(str(teacher_dir), distill_steps.run_config(
      str(teacher_dir)).model)
  student = distill_steps.load_run_params(str(wd), c.model)
  flat = lambda t: {'/'.join(map(str, k)): np.asarray(v.get_value())
                    for k, v in nnx.to_flat_state(t)}
  t, s = flat(teacher), flat(student)
  for name in ('embed/embedding', 'head/embedding', 'blocks/1/mlp/fc1/kernel', 'ln_f/scale'):
    np.testing.assert_array_equal(s[name], t[name])  # frozen copies never move


def test_teacher_forced_then_end_to_end_from_the_stage_one_workdir(teacher_dir, tmp_path):
  _, wd1, _ = stage(teacher_dir, tmp_path, 's1', stage='layers', mode='teacher_forced')
  r1 = rows(wd1)
  assert r1[-1]['loss'] < r1[0]['loss']
  _, wd2, report = stage(teacher_dir, tmp_path, 's2', stage='e2e', init_from=str(wd1),
                         kl_weight=0.5, temperature=2.0)
  r2 = rows(wd2)
  assert report['step'] == 8 and all(x['kl'] > 0 for x in r2)
  # Re-running a finished stage resumes from its checkpoint: nothing more is trained.
  _, _, again = stage(teacher_dir, tmp_path, 's2', stage='e2e', init_from=str(wd1),
                      kl_weight=0.5, temperature=2.0)
  assert again['steps_this_run'] == 0


def test_bad_distill_configs_are_one_line_errors(teacher_dir, tmp_path):
  c = base(mixer='hyena')
  c.distill.update(stage='layers')
  with pytest.raises(config_lib.ConfigError, match='exactly one'):
    config_lib.validate(c)
  c.distill.teacher_workdir = str(teacher_dir)
  c.model.d_model = 32
  with pytest.raises(config_lib.ConfigError, match='model.d_model'):
    config_lib.validate(c)
  c = base(mixer='hyena')
  c.distill.update(stage='layers', teacher_workdir=str(tmp_path))
  with pytest.raises(config_lib.ConfigError, match='config.json'):
    config_lib.validate(c)


def test_pipeline_plans_stage_one_then_stage_two_from_its_workdir(tmp_path):
  from hyena_jax.distill import pipeline  # pylint: disable=g-import-not-at-top
  c = base(mixer='hyena')
  c.distill.update(stage='layers', teacher_workdir='/t', kl_weight=0.3)
  (c1, wd1), (c2, wd2) = pipeline.stages(c, str(tmp_path))
  assert (c1.distill.stage, c2.distill.stage) == ('layers', 'e2e')
  assert c2.distill.init_from == wd1 == str(tmp_path / 'layers') and wd2.endswith('e2e')
  assert c2.distill.kl_weight == 0.3 and c.distill.init_from == ''  # the input is untouched


@pytest.mark.parametrize('arg', ['teacher', 'scratch', 'layers,teacher=/t,mode=teacher_forced',
                                 'e2e,teacher=/t,init=/i,kl=0.5,attn_init=0'])
def test_distill_config_arguments(arg):
  c = config_lib.load_config_file('configs/distill_wikitext2.py', arg)
  run = arg.split(',')[0]
  assert c.model.mixer == ('attention' if run == 'teacher' else 'hyena')
  assert c.distill.stage == (run if run in ('layers', 'e2e') else 'off')
  p = config_lib.load_config_file('configs/pythia70m_to_hyena.py', 'layers,teacher_hf=/x')
  assert p.distill.teacher_hf == '/x' and p.model.d_model == 512 and p.model.mixer == 'hyena'
