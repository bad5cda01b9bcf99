"""End-to-end trainer tests: exact resume after SIGKILL, SIGTERM preemption, NaN guard,
no recompilation, refusal to resume a different model, and the default command's outputs."""

import json
import math
import shutil
import signal

import chex
import jax
import numpy as np
import pytest

import helpers
from hyena_jax import config_lib

NUM_STEPS = 100
CKPT_EVERY = 10
KEEP = 3
# One program shared by every run below (and, through the compile cache, by their resumes).
RUN = helpers.TINY + (f'--config.train.num_steps={NUM_STEPS}',
                      f'--config.train.checkpoint_every_steps={CKPT_EVERY}',
                      f'--config.train.keep_checkpoints={KEEP}')
KILL_AFTER_STEP = 25


def baseline():
  """The uninterrupted reference run (shared by several tests; read-only)."""
  return helpers.cached_run(*RUN)


def assert_losses_match_baseline(workdir, atol=1e-6):
  ref, got = helpers.losses(baseline()[0]), helpers.losses(workdir)
  assert sorted(ref) == list(range(1, NUM_STEPS + 1))
  assert sorted(got) == list(range(1, NUM_STEPS + 1)), (
      f'missing steps {sorted(set(range(1, NUM_STEPS + 1)) - set(got))}, '
      f'extra {sorted(set(got) - set(range(1, NUM_STEPS + 1)))}')
  steps = sorted(ref)
  np.testing.assert_allclose([got[s] for s in steps], [ref[s] for s in steps], rtol=0, atol=atol)
  ref_eval, got_eval = helpers.losses(baseline()[0], 'eval'), helpers.losses(workdir, 'eval')
  assert sorted(got_eval) == sorted(ref_eval)
  np.testing.assert_allclose([got_eval[s] for s in sorted(ref_eval)],
                             [ref_eval[s] for s in sorted(ref_eval)], rtol=0, atol=atol)


def test_default_command_writes_metrics_report_and_checkpoints():
  workdir, res = baseline()
  assert 'final report:' in res.stdout
  rows = helpers.read_metrics(workdir)
  train = [r for r in rows if r['split'] == 'train']
  assert [r['step'] for r in train] == list(range(1, NUM_STEPS + 1))
  assert all(math.isfinite(r['loss']) for r in train)
  evals = [r for r in rows if r['split'] == 'eval']
  assert evals and evals[-1]['step'] == NUM_STEPS
  assert 0.0 <= evals[-1]['accuracy'] <= 1.0 and math.isfinite(evals[-1]['loss'])

  report = json.loads((workdir / 'final_report.json').read_text())
  assert report['step'] == NUM_STEPS and report['steps_this_run'] == NUM_STEPS
  assert not report['preempted']
  assert isinstance(report['eval_accuracy'], float) and 0.0 <= report['eval_accuracy'] <= 1.0
  assert report['eval_accuracy'] == pytest.approx(evals[-1]['accuracy'])
  assert report['train_loss'] == pytest.approx(train[-1]['loss'])
  assert report['devices'] == 1 and report['processes'] == 1

  assert (workdir / 'config.json').exists()
  assert helpers.checkpoint_steps(workdir) == [NUM_STEPS - CKPT_EVERY * i
                                               for i in reversed(range(KEEP))]
  assert helpers.latest_checkpoint_step(workdir) == NUM_STEPS
  state = helpers.restore_checkpoint_state(workdir, NUM_STEPS)
  assert int(state['step']) == NUM_STEPS
  chex.assert_tree_all_finite(state['params'])


def test_sigkill_mid_run_then_rerun_resumes_exactly(tmp_path):
  workdir = tmp_path / 'wd'
  baseline()  # Run first: it fills the compile cache and keeps the CPU free for the kill window.
  first = helpers.CliProcess(workdir, *RUN, log_dir=tmp_path, name='killed')
  with helpers.killing_on_exit(first):
    seen = helpers.wait_for_train_step(workdir, first, KILL_AFTER_STEP)
    assert first.proc.poll() is None, (
        f'run finished before it could be killed (at step {seen}); raise NUM_STEPS\n'
        f'{first.describe()}')
    first.proc.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
  killed_at = helpers.last_train_step(workdir)
  assert KILL_AFTER_STEP <= killed_at < NUM_STEPS
  saved = helpers.latest_checkpoint_step(workdir)
  assert saved is not None and 0 < saved <= killed_at, (saved, killed_at)
  assert not (workdir / 'final_report.json').exists()

  res = helpers.run_cli(workdir, *RUN)
  assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
  # Resumed from the last committed checkpoint, never from scratch.
  resumed = [l for l in res.stdout.splitlines() if l.startswith('Resumed')]
  assert len(resumed) == 1, res.stdout
  resumed_at = int(resumed[0].rstrip('.').split()[-1])
  assert resumed_at == saved and resumed_at % CKPT_EVERY == 0, (resumed[0], saved)
  report = json.loads((workdir / 'final_report.json').read_text())
  assert report['step'] == NUM_STEPS
  assert report['steps_this_run'] == NUM_STEPS - resumed_at

  assert_losses_match_baseline(workdir, atol=1e-6)


def test_sigterm_saves_current_step_exits_zero_and_rerun_continues(tmp_path):
  workdir = tmp_path / 'wd'
  baseline()
  first = helpers.CliProcess(workdir, *RUN, log_dir=tmp_path, name='terminated')
  with helpers.killing_on_exit(first):
    helpers.wait_for_train_step(workdir, first, KILL_AFTER_STEP)
    assert first.proc.poll() is None, f'run finished before SIGTERM\n{first.describe()}'
    first.proc.send_signal(signal.SIGTERM)
    rc = first.wait()
  assert rc == 0, first.describe()
  stop = helpers.last_train_step(workdir)
  assert KILL_AFTER_STEP <= stop < NUM_STEPS
  assert f'SIGTERM: saved step {stop} ' in first.stdout, first.describe()
  assert helpers.latest_checkpoint_step(workdir) == stop
  state = helpers.restore_checkpoint_state(workdir, stop)
  assert int(state['step']) == stop
  chex.assert_tree_all_finite(state['params'])
  report = json.loads((workdir / 'final_report.json').read_text())
  assert report['preempted'] and report['step'] == stop

  res = helpers.run_cli(workdir, *RUN)
  assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
  assert f'Resumed from {workdir.absolute() / "checkpoints"} at step {stop}.' in res.stdout
  report = json.loads((workdir / 'final_report.json').read_text())
  assert report['step'] == NUM_STEPS and not report['preempted']
  assert report['steps_this_run'] == NUM_STEPS - stop
  assert_losses_match_baseline(workdir, atol=1e-6)


@pytest.mark.parametrize('nan_step', [20])  # A checkpoint step: that save must not happen.
def test_injected_nan_stops_with_one_line_and_keeps_last_good_checkpoint(tmp_path, nan_step):
  workdir = tmp_path / 'wd'
  res = helpers.run_cli(workdir, *RUN, f'--config.train.inject_nan_at_step={nan_step}')
  assert res.returncode not in (0, None), res.stdout[-2000:]
  lines = helpers.error_lines(res.stderr)
  assert len(lines) == 1, res.stderr[-3000:]
  assert lines[0].startswith('hyena_jax: error:'), lines
  assert f'step {nan_step}' in lines[0] and 'Traceback' not in res.stderr

  good = helpers.latest_checkpoint_step(workdir)
  assert good is not None and good < nan_step
  assert good == (nan_step - 1) // CKPT_EVERY * CKPT_EVERY
  assert helpers.checkpoint_steps(workdir)[-1] == good
  state = helpers.restore_checkpoint_state(workdir, good)
  assert int(state['step']) == good
  chex.assert_tree_all_finite(state['params'])
  chex.assert_tree_all_finite(state['opt_state'])

  train = helpers.losses(workdir)
  assert sorted(train) == list(range(1, nan_step))  # The poisoned step is never logged.
  assert all(math.isfinite(v) for v in train.values())
  assert not (workdir / 'final_report.json').exists()


def test_no_recompilation_after_first_step(tmp_path):
  from hyena_jax import train  # pylint: disable=g-import-not-at-top
  c = config_lib.load_config_file(str(helpers.REPO / helpers.DEFAULT_CONFIG))
  c.data.seq_len, c.data.num_eval = 16, 8
  c.model.d_model, c.model.d_inner, c.model.n_layer = 16, 32, 1
  c.train.global_batch_size = 8
  c.train.num_steps, c.train.checkpoint_every_steps, c.train.eval_every_steps = 7, 3, 2
  trainer = train.Trainer(c, str(tmp_path / 'wd'))
  report = trainer.run()
  assert report['step'] == 7 and report['steps_this_run'] == 7
  assert trainer.traces == 1
  assert trainer.train_step._cache_size() == 1  # pylint: disable=protected-access
  assert trainer.eval_step._cache_size() == 1  # pylint: disable=protected-access

  # Resuming in a fresh Trainer (restored, not initialized state) also compiles once.
  c.train.num_steps = 10
  trainer = train.Trainer(c, str(tmp_path / 'wd2'))
  shutil.copytree(tmp_path / 'wd', tmp_path / 'wd2')
  report = trainer.run()
  assert report['step'] == 10 and report['steps_this_run'] == 3
  assert trainer.traces == 1
  assert trainer.train_step._cache_size() == 1  # pylint: disable=protected-access

  # Re-running a finished workdir trains nothing and reports the restored model's eval.
  again = train.Trainer(c, str(tmp_path / 'wd2')).run()
  assert again['steps_this_run'] == 0 and again['step'] == 10
  assert again['eval_loss'] == pytest.approx(report['eval_loss'], abs=1e-6)


def test_resume_with_different_model_fails_without_touching_checkpoint(tmp_path):
  workdir = tmp_path / 'wd'
  shutil.copytree(baseline()[0], workdir)
  before = helpers.tree_digest(workdir)
  res = helpers.run_cli(workdir, *RUN, '--config.model.d_model=32')
  assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
  lines = helpers.error_lines(res.stderr)
  assert len(lines) == 1, res.stderr[-3000:]
  assert lines[0].startswith('hyena_jax: error:') and 'model.d_model' in lines[0], lines
  assert 'Resumed' not in res.stdout
  assert helpers.tree_digest(workdir) == before


def test_early_stop_on_a_checkpoint_step_saves_and_exits_zero(tmp_path):
  workdir = tmp_path / 'wd'
  res = helpers.run_cli(workdir, *RUN, f'--config.train.eval_every_steps={CKPT_EVERY}',
                        '--config.train.stop_at_eval_accuracy=0.0')
  assert res.returncode == 0, res.stderr[-1500:]
  assert f'stopping at step {CKPT_EVERY}.' in res.stdout
  assert json.loads((workdir / 'final_report.json').read_text())['step'] == CKPT_EVERY
  assert helpers.latest_checkpoint_step(workdir) == CKPT_EVERY
