"""benchmarks/timing.py (the benchmarks' shared timing loop) and a tiny run of
benchmarks/attention_blocks.py, the tile table the attention defaults come from."""

import json
import os
import sys

import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'benchmarks'))
import attention_blocks  # pylint: disable=g-import-not-at-top,wrong-import-position
import timing  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_times_warms_up_then_times_each_call():
  calls = []
  ts, out = timing.times(lambda x: calls.append(x) or jnp.asarray(x), 7, reps=3, warmup=2)
  assert len(calls) == 5 and len(ts) == 3 and all(t >= 0 for t in ts)
  assert int(out) == 7
  assert timing.median_s(lambda: 1, reps=1) >= 0


def test_chained_feeds_each_call_the_previous_state():
  step = timing.chained(lambda s: s + 1, jnp.asarray(0))
  timing.times(step, reps=3)  # One warm-up call and three timed ones.
  assert int(step.state) == 4


def test_cpu_names_the_core_count():
  info = timing.cpu()
  assert info['cores'] == len(os.sched_getaffinity(0))
  json.dumps(info)  # Goes into the logs as it is.


def test_write_json_makes_the_log_folder(tmp_path):
  path = tmp_path / 'new' / 'deeper' / 'log.json'
  timing.write_json(str(path), {'rows': [1, 2]})
  assert json.loads(path.read_text()) == {'rows': [1, 2]}


def test_attention_blocks_times_both_passes(tmp_path):
  out = tmp_path / 'blocks.json'
  attention_blocks.main(['--lengths', '64', '--blocks', '32x16,16x32', '--runs', '1',
                         '--out', str(out)])
  rows = json.loads(out.read_text())['rows']
  assert [(r['block_q'], r['block_k']) for r in rows] == [(32, 16), (16, 32)]
  assert all(r['forward_s'] > 0 and r['backward_s'] > 0 for r in rows)


def test_attention_blocks_rejects_a_length_off_the_blocks():
  with pytest.raises(SystemExit, match='L=100 is not a multiple of the blocks 32x16'):
    attention_blocks.main(['--lengths', '100', '--blocks', '32x16'])
