"""Data parallelism must not change the numbers: 8 fake CPU devices == 1 device, and two
jax.distributed processes (1 device each) == one process with 2 devices, step by step.

Embed dropout stays at the default 0.1: its keys depend only on (seed, step), and the batch
is generated from (seed, step) straight into its sharding, so the device layout is invisible.
"""

import json

import numpy as np

import helpers

NUM_STEPS = 10
RUN = helpers.TINY + (f'--config.train.num_steps={NUM_STEPS}',
                      '--config.train.checkpoint_every_steps=5',
                      '--config.train.eval_every_steps=5')
ATOL = 1e-5


def _report(workdir) -> dict:
  return json.loads((workdir / 'final_report.json').read_text())


def _assert_same_losses(got_dir, ref_dir, atol=ATOL):
  for split, key in (('train', 'loss'), ('train', 'grad_norm'), ('eval', 'loss'),
                     ('eval', 'accuracy')):
    ref, got = helpers.losses(ref_dir, split, key), helpers.losses(got_dir, split, key)
    expected_steps = list(range(1, NUM_STEPS + 1)) if split == 'train' else [5, 10]
    assert sorted(ref) == expected_steps and sorted(got) == expected_steps, (split, ref, got)
    np.testing.assert_allclose([got[s] for s in expected_steps],
                               [ref[s] for s in expected_steps], rtol=0, atol=atol,
                               err_msg=f'{split} {key}')


def test_eight_devices_match_one_device(tmp_path):
  one = helpers.CliProcess(tmp_path / 'one', *RUN, log_dir=tmp_path, name='one', devices=1)
  eight = helpers.CliProcess(tmp_path / 'eight', *RUN, log_dir=tmp_path, name='eight', devices=8)
  with helpers.killing_on_exit(one, eight):
    rcs = helpers.wait_all(one, eight)
    assert rcs == [0, 0], one.describe() + '\n' + eight.describe()
  assert (_report(tmp_path / 'one')['devices'], _report(tmp_path / 'eight')['devices']) == (1, 8)
  assert '8 device(s) over 1 process(es)' in eight.stdout
  _assert_same_losses(tmp_path / 'eight', tmp_path / 'one')
  assert helpers.checkpoint_steps(tmp_path / 'eight') == [5, 10]


def test_two_processes_match_one_process_with_two_devices(tmp_path):
  port = helpers.free_port()
  multi = tmp_path / 'multi'
  procs = [
      helpers.CliProcess(multi, *RUN, log_dir=tmp_path, name=f'process{i}', devices=1,
                         flags=(f'--coordinator_address=localhost:{port}',
                                '--num_processes=2', f'--process_id={i}'))
      for i in range(2)
  ]
  single = helpers.CliProcess(tmp_path / 'single', *RUN, log_dir=tmp_path, name='single',
                              devices=2)
  with helpers.killing_on_exit(*procs, single):
    rcs = helpers.wait_all(*procs, single)
    assert rcs == [0, 0, 0], '\n'.join(p.describe() for p in (*procs, single))

  report = _report(multi)
  assert (report['devices'], report['processes'], report['step']) == (2, 2, NUM_STEPS)
  assert _report(tmp_path / 'single')['devices'] == 2
  # Only process 0 logs and writes metrics (helpers.losses fails on a step written twice).
  assert '2 device(s) over 2 process(es)' in procs[0].stdout
  assert 'final report' not in procs[1].stdout and 'step ' not in procs[1].stdout
  _assert_same_losses(multi, tmp_path / 'single')
  # Both processes took part in the checkpoint, and it restores on one process.
  assert helpers.checkpoint_steps(multi) == [5, 10]
  state = helpers.restore_checkpoint_state(multi, NUM_STEPS)
  assert int(state['step']) == NUM_STEPS
