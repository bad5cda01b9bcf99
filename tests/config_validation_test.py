"""Bad configs fail fast with one line naming the field, in-process and through the CLI."""

import time

import pytest

import helpers
from hyena_jax import config_lib


def default_config():
  return config_lib.load_config_file(str(helpers.REPO / helpers.DEFAULT_CONFIG))


def _seq_len_over_l_max(c):
  # model.l_max follows data.seq_len until set; setting it must not rewrite data.seq_len.
  c.model.l_max = 32
  c.data.seq_len = 64


BAD = {
    'seq_len_over_l_max': (_seq_len_over_l_max, 'data.seq_len'),
    'even_emb_dim': (helpers.set_field('model.hyena.emb_dim', 4), 'model.hyena.emb_dim'),
    'emb_dim_below_3': (helpers.set_field('model.hyena.emb_dim', 1), 'model.hyena.emb_dim'),
    'unknown_mixer': (helpers.set_field('model.mixer', 'no_such_mixer'), 'model.mixer'),
    'negative_d_inner': (helpers.set_field('model.d_inner', -1), 'model.d_inner'),
    'unknown_residual': (helpers.set_field('model.residual', 'prenorm'), 'model.residual'),
    'unknown_gelu': (helpers.set_field('model.gelu', 'relu'), 'model.gelu'),
    'unknown_hyena_impl': (helpers.set_field('model.hyena.impl', 'fused'), 'model.hyena.impl'),
    'unknown_data_name': (helpers.set_field('data.name', 'no_such_dataset'), 'data.name'),
    'zero_lr': (helpers.set_field('optim.lr', 0.0), 'optim.lr'),
    'negative_lr': (helpers.set_field('optim.lr', -1e-3), 'optim.lr'),
    'zero_num_steps': (helpers.set_field('train.num_steps', 0), 'train.num_steps'),
    'negative_num_steps': (helpers.set_field('train.num_steps', -5), 'train.num_steps'),
    'recall_odd_seq_len': (helpers.set_field('data.seq_len', 63), 'data.seq_len'),
    'unknown_eval_mode': (helpers.set_field('eval.modes', 'nonoverlap,bogus'), 'eval.modes'),
    'eval_stride_over_seq_len': (helpers.set_field('eval.stride', 65), 'eval.stride'),
    'l2t_window_over_l_max': (lambda c: (helpers.set_field('eval.modes', 'l2t')(c),
                                         helpers.set_field('eval.l2t_window', 65)(c)), 'eval.l2t_window'),
    'unknown_tokenizer': (lambda c: (helpers.set_field('data.name', 'ptb')(c),
                                     helpers.set_field('data.tokenizer', 'sentencepiece')(c)), 'data.tokenizer'),
}


def test_default_config_is_valid():
  config_lib.validate(default_config(), device_count=1)
  config_lib.validate(default_config(), device_count=8)


@pytest.mark.parametrize('name', sorted(BAD))
def test_bad_config_raises_one_line_naming_the_field(name):
  mutate, field = BAD[name]
  c = default_config()
  mutate(c)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c, device_count=1)
  msg = str(e.value)
  assert '\n' not in msg and msg.strip() == msg and msg, repr(msg)
  assert f'{field}=' in msg, msg


def test_global_batch_not_divisible_by_device_count():
  c = default_config()
  assert c.train.global_batch_size % 3 != 0
  config_lib.validate(c, device_count=2)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c, device_count=3)
  msg = str(e.value)
  assert '\n' not in msg and 'train.global_batch_size=' in msg and '3' in msg, msg


def test_l_max_follows_seq_len_until_overridden():
  c = default_config()
  c.data.seq_len = 16
  assert c.model.l_max == 16
  c.model.l_max = 64  # Must not rewrite data.seq_len (it used to be a bare alias).
  assert (c.data.seq_len, c.model.l_max) == (16, 64)
  config_lib.validate(c)


def test_recall_odd_seq_len_is_the_only_problem():
  # l_max follows seq_len, so the only failing check is recall's even-length requirement.
  c = default_config()
  c.data.seq_len = 63
  assert c.model.l_max == 63
  with pytest.raises(config_lib.ConfigError, match=r'^data\.seq_len=63 .*recall'):
    config_lib.validate(c)


@pytest.mark.parametrize('override,field', [
    ('--config.model.hyena.emb_dim=4', 'model.hyena.emb_dim=4'),
    ('--config.train.num_steps=0', 'train.num_steps=0'),
])
def test_cli_bad_override_exits_2_with_one_line_before_compiling(tmp_path, override, field):
  workdir = tmp_path / 'wd'
  start = time.time()
  # JAX_LOG_COMPILES=1: any jit compilation before the error would add stderr lines.
  res = helpers.run_cli(workdir, *helpers.TINY, override, timeout=300,
                        env={'JAX_LOG_COMPILES': '1'})
  elapsed = time.time() - start
  assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
  lines = helpers.error_lines(res.stderr)
  assert len(lines) == 1, res.stderr[-3000:]
  assert lines[0].startswith(f'hyena_jax: error: {field} '), lines[0]
  assert res.stdout == ''  # Not even the header: nothing was built, traced or compiled.
  assert not workdir.exists()  # No config.json, metrics or checkpoints written.
  assert elapsed < 120, elapsed  # Generous: the CPU is shared; compiles show in stderr.


def test_cli_l_max_override_is_independent_of_seq_len(tmp_path):
  # num_steps=0 makes the run fail fast either way: with the alias the first problem found
  # is train.num_steps (seq_len silently became 32); without it, data.seq_len=64 > l_max=32.
  res = helpers.run_cli(tmp_path / 'wd', *helpers.TINY, '--config.data.seq_len=64',
                        '--config.model.l_max=32', '--config.train.num_steps=0', timeout=300)
  assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
  lines = helpers.error_lines(res.stderr)
  assert len(lines) == 1 and lines[0].startswith('hyena_jax: error: data.seq_len=64 '), lines
  assert 'model.l_max=32' in lines[0]


@pytest.mark.parametrize('args,needle', [
    (('--config.model.no_such_field=1',), 'unknown config field'),
    (('--config.model.d_model=abc',), '--config.model.d_model=abc'),
])
def test_cli_bad_flag_is_one_line_exit_2(tmp_path, args, needle):
  res = helpers.run_cli(tmp_path / 'wd', *args, timeout=300)
  assert res.returncode == 2, res.stderr[-2000:]
  assert 'Traceback' not in res.stderr
  lines = helpers.error_lines(res.stderr)
  assert len(lines) == 1 and needle in lines[0], res.stderr[-2000:]


def test_cli_missing_config_file_is_one_line_exit_2(tmp_path):
  res = helpers.run_cli(tmp_path / 'wd', config='configs/no_such_config.py', timeout=300)
  assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr[-2000:]
  lines = helpers.error_lines(res.stderr)
  assert len(lines) == 1 and 'no_such_config.py' in lines[0], res.stderr[-2000:]
