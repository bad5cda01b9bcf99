"""Metrics: JSON lines in WORKDIR/metrics.jsonl (+ TensorBoard if tensorboardX is installed)."""

import json
import os
import time

import jax


def _before(line: str, resume_step: int | None) -> bool:
  # A line cut short by a crash mid-write is dropped, not fatal.
  try:
    return resume_step is not None and json.loads(line)['step'] <= resume_step
  except (ValueError, KeyError):
    return False


class MetricWriter:
  """Only process 0 writes. On resume, lines past the restored step are dropped so the
  file reads as one uninterrupted run."""

  def __init__(self, workdir: str, resume_step: int | None = None):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(self.path):
      with open(self.path) as f:
        lines = f.readlines()
      keep = [l for l in lines if l.strip() and _before(l, resume_step)]
      with open(self.path, 'w') as f:
        f.writelines(keep)
    self._file = open(self.path, 'a')
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, 'tb'))
    except ImportError:
      pass

  def write(self, step: int, split: str, scalars: dict) -> None:
    if not self.enabled:
      return
    row = {'step': int(step), 'split': split, 'time': round(time.time(), 3)}
    row.update({k: float(v) for k, v in scalars.items()})
    self._file.write(json.dumps(row) + '\n')
    self._file.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(f'{split}/{k}', float(v), int(step))

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      if self._tb is not None:
        self._tb.close()


def format_duration(s: float) -> str:
  s = int(s)
  return f'{s // 3600}h{s % 3600 // 60:02d}m' if s >= 3600 else f'{s // 60}m{s % 60:02d}s'
