"""Tiny runs of the speed benchmarks whose tables the README quotes: benchmarks/speed_vs_torch.py
(its subprocess per kind, the rounds, the ratio column, a stand-in safari checkout) and
benchmarks/profile_step.py (per-op times from a jax.profiler trace; needs xprof)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'benchmarks'))
import speed_vs_torch  # pylint: disable=g-import-not-at-top,wrong-import-position

pytest.importorskip('torch')

# A stand-in for safari's standalone_hyena.py with its constructor's signature: the benchmark
# must import the module from the checkout it is given, build it at the run's sizes and time it.
_FAKE_SAFARI = '''
import torch

class HyenaOperator(torch.nn.Module):

  def __init__(self, d_model, l_max, order, filter_order):
    super().__init__()
    assert (order, filter_order) == (2, 64)
    self.proj = torch.nn.Linear(d_model, d_model)
    self.l_max = l_max

  def forward(self, u):
    assert u.shape[1] == self.l_max
    return self.proj(u)
'''


def test_speed_vs_torch_runs_every_kind_each_round(tmp_path, capsys):
  safari = tmp_path / 'safari'
  safari.mkdir()
  (safari / 'standalone_hyena.py').write_text(_FAKE_SAFARI)
  out = tmp_path / 'logs' / 'speed.json'  # The folder does not exist yet.
  speed_vs_torch.main(['--lengths', '64', '--kinds', 'safari,hyena,torch_sdpa,attention',
                       '--d_model', '64', '--runs', '1', '--rounds', '2', '--threads', '1',
                       '--safari', str(safari), '--out', str(out)])
  log = json.loads(out.read_text())
  rows = log['rows']
  assert sorted((r['kind'], r['round']) for r in rows) == sorted(
      (k, n) for k in ('safari', 'hyena', 'torch_sdpa', 'attention') for n in (0, 1))
  assert all(r['median_s'] > 0 and 'error' not in r for r in rows), rows
  assert log['env']['d_model'] == 64 and log['env']['rounds'] == 2
  table = capsys.readouterr().out
  row = [l for l in table.splitlines() if l.startswith('| 64 |')]
  assert len(row) == 1 and row[0].count('(') == 2  # Both ratio cells give a range over rounds.


def test_speed_vs_torch_skips_safari_without_a_checkout(tmp_path, capsys):
  out = tmp_path / 'speed.json'
  speed_vs_torch.main(['--lengths', '32', '--kinds', 'safari,hyena', '--d_model', '64',
                       '--runs', '1', '--threads', '1', '--safari', str(tmp_path),
                       '--out', str(out)])
  assert 'skipping the safari kind' in capsys.readouterr().out
  assert [r['kind'] for r in json.loads(out.read_text())['rows']] == ['hyena']


def test_speed_vs_torch_reports_a_failing_kind_and_goes_on(tmp_path):
  safari = tmp_path / 'safari'
  safari.mkdir()
  (safari / 'standalone_hyena.py').write_text('raise ImportError("broken checkout")\n')
  out = tmp_path / 'speed.json'
  speed_vs_torch.main(['--lengths', '32', '--kinds', 'safari,hyena', '--d_model', '64',
                       '--runs', '1', '--threads', '1', '--safari', str(safari),
                       '--out', str(out)])
  rows = {r['kind']: r for r in json.loads(out.read_text())['rows']}
  assert 'broken checkout' in ' '.join(rows['safari']['error'])
  assert rows['hyena']['median_s'] > 0


def test_profile_step_attributes_op_time(tmp_path):
  pytest.importorskip('xprof')
  import profile_step  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'profile.json'
  profile_step.main(['--what', 'hyena', '--L', '256', '--reps', '1', '--out', str(out)])
  log = json.loads(out.read_text())
  assert log['total_ms'] > 0 and log['rows']
  assert sum(log['share_by_kind'].values()) == pytest.approx(1.0, abs=1e-6)
  assert log['share_by_kind'].get('fft', 0) > 0  # The long convolution's FFTs are found.
