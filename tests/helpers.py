"""Shared helpers for the end-to-end tests: run the CLI in subprocesses, read its outputs.

Every CLI subprocess uses the session's persistent XLA compilation cache (tests/conftest.py),
so identical programs are compiled once per test session.
"""

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = 'configs/default.py'

# Tiny but complete model (default config otherwise, embed dropout 0.1 kept on).
TINY = (
    '--config.data.seq_len=16',
    '--config.model.d_model=16',
    '--config.model.d_inner=32',
    '--config.model.n_layer=1',
    '--config.train.global_batch_size=8',
    '--config.data.num_eval=8',
)

COMPILE_CACHE_DIR = os.environ['HYENA_JAX_TEST_XLA_CACHE']  # Made by tests/conftest.py.
_SCRATCH = tempfile.mkdtemp(prefix='hyena_jax_test_runs_')
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)

SUBPROCESS_TIMEOUT_S = 600


def cli_env(devices: int = 1, extra: dict | None = None) -> dict:
  env = dict(os.environ)
  for k in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
    env.pop(k, None)
  env['PYTHONPATH'] = os.pathsep.join(
      [str(REPO)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
  env['JAX_PLATFORMS'] = 'cpu'
  env['XLA_FLAGS'] = (f'--xla_force_host_platform_device_count={devices} '
                      + os.environ.get('HYENA_JAX_TEST_XLA_FLAGS', ''))
  env['JAX_COMPILATION_CACHE_DIR'] = COMPILE_CACHE_DIR
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  env['PYTHONUNBUFFERED'] = '1'
  env.update(extra or {})
  return env


def cli_args(workdir, *overrides, config: str = DEFAULT_CONFIG, flags=()) -> list[str]:
  return [sys.executable, '-m', 'hyena_jax.main', f'--config={config}', f'--workdir={workdir}',
          *overrides, *flags]


def run_cli(workdir, *overrides, devices: int = 1, flags=(), config: str = DEFAULT_CONFIG,
            timeout: float = SUBPROCESS_TIMEOUT_S, env: dict | None = None
            ) -> subprocess.CompletedProcess:
  """Runs the CLI to completion; stdout/stderr captured as text."""
  return subprocess.run(cli_args(workdir, *overrides, config=config, flags=flags), cwd=REPO,
                        env=cli_env(devices, env), capture_output=True, text=True,
                        timeout=timeout, check=False)


class CliProcess:
  """A CLI run in the background, stdout/stderr going to files (no pipe can fill up)."""

  def __init__(self, workdir, *overrides, log_dir, name: str, devices: int = 1, flags=(),
               config: str = DEFAULT_CONFIG):
    os.makedirs(log_dir, exist_ok=True)
    self.name = name
    self.stdout_path = Path(log_dir) / f'{name}.stdout'
    self.stderr_path = Path(log_dir) / f'{name}.stderr'
    with open(self.stdout_path, 'w') as out, open(self.stderr_path, 'w') as err:
      self.proc = subprocess.Popen(cli_args(workdir, *overrides, config=config, flags=flags),
                                   cwd=REPO, env=cli_env(devices), stdout=out, stderr=err)

  @property
  def stdout(self) -> str:
    return self.stdout_path.read_text()

  @property
  def stderr(self) -> str:
    return self.stderr_path.read_text()

  def wait(self, timeout: float = SUBPROCESS_TIMEOUT_S) -> int:
    return self.proc.wait(timeout=timeout)

  def describe(self) -> str:
    tail = lambda s: '\n'.join(s.splitlines()[-30:])
    return (f'[{self.name}] rc={self.proc.poll()}\n--- stdout ---\n{tail(self.stdout)}\n'
            f'--- stderr ---\n{tail(self.stderr)}')

  def kill(self) -> None:
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGKILL)
      self.proc.wait(timeout=60)


@contextlib.contextmanager
def killing_on_exit(*procs: CliProcess):
  """Whatever happens in the block, no child outlives it."""
  try:
    yield procs
  finally:
    for p in procs:
      p.kill()


def wait_all(*procs: CliProcess, timeout: float = SUBPROCESS_TIMEOUT_S) -> list[int]:
  deadline = time.time() + timeout
  return [p.wait(timeout=max(deadline - time.time(), 1.0)) for p in procs]


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def read_metrics(workdir, tolerate_partial: bool = False) -> list[dict]:
  path = Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  rows = []
  for line in path.read_text().splitlines():
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      if not tolerate_partial:
        raise
  return rows


def losses(workdir, split: str = 'train', key: str = 'loss') -> dict[int, float]:
  """{step: value} for one split; fails on a step written twice."""
  out = {}
  for r in read_metrics(workdir):
    if r['split'] == split:
      assert r['step'] not in out, f'step {r["step"]} ({split}) appears twice in metrics.jsonl'
      out[r['step']] = r[key]
  return out


def last_train_step(workdir) -> int:
  steps = [r['step'] for r in read_metrics(workdir, tolerate_partial=True)
           if r.get('split') == 'train']
  return max(steps, default=0)


def wait_for_train_step(workdir, cli: CliProcess, min_step: int, timeout: float = 400.0,
                        poll_s: float = 0.01) -> int:
  """Polls metrics.jsonl until a train line with step >= min_step; returns that step."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    s = last_train_step(workdir)
    if s >= min_step:
      return s
    if cli.proc.poll() is not None:
      raise AssertionError(f'run exited before step {min_step} (last {s}):\n{cli.describe()}')
    time.sleep(poll_s)
  raise AssertionError(f'no step {min_step} within {timeout}s:\n{cli.describe()}')


def checkpoint_steps(workdir) -> list[int]:
  """Committed orbax step directories (orbax writes into a tmp dir and renames on commit)."""
  d = Path(workdir) / 'checkpoints'
  return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit()) \
      if d.exists() else []


def _manager(workdir):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp.CheckpointManager(Path(workdir).absolute() / 'checkpoints',
                               options=ocp.CheckpointManagerOptions(read_only=True),
                               item_handlers={'state': ocp.StandardCheckpointHandler(),
                                              'data': ocp.JsonCheckpointHandler()})


def latest_checkpoint_step(workdir) -> int | None:
  mngr = _manager(workdir)
  try:
    return mngr.latest_step()
  finally:
    mngr.close()


def restore_checkpoint_state(workdir, step: int):
  """The saved train state, restored onto this process's first device.

  The target is built from the checkpoint's own metadata, so a checkpoint written by any
  topology (e.g. two processes) restores here.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  mngr = _manager(workdir)
  try:
    meta = mngr.item_metadata(step)['state']
    meta = getattr(meta, 'tree', meta)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          meta)
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    return out.state
  finally:
    mngr.close()


def tree_digest(root) -> dict[str, tuple]:
  """{relative path: (sha256, mtime_ns)} for every file under root (dirs by their mtime)."""
  root = Path(root)
  out = {}
  for p in sorted(root.rglob('*')):
    rel = str(p.relative_to(root))
    if p.is_file():
      out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    else:
      out[rel] = ('dir', p.stat().st_mtime_ns)
  return out


_CACHED_RUNS: dict[tuple, tuple[Path, subprocess.CompletedProcess]] = {}


def cached_run(*overrides, devices: int = 1) -> tuple[Path, subprocess.CompletedProcess]:
  """One successful CLI run per distinct (overrides, devices) per pytest process.

  Callers must treat the returned workdir as read-only (copy it to modify).
  """
  key = (tuple(overrides), devices)
  if key not in _CACHED_RUNS:
    workdir = Path(tempfile.mkdtemp(prefix='run_', dir=_SCRATCH)) / 'workdir'
    res = run_cli(workdir, *overrides, devices=devices)
    assert res.returncode == 0, f'rc={res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}'
    _CACHED_RUNS[key] = (workdir, res)
  return _CACHED_RUNS[key]


def error_lines(stderr: str) -> list[str]:
  return [l for l in stderr.splitlines() if l.strip()]


def set_field(path: str, value):
  """A config mutation `c.<path> = value` (for tables of bad configs)."""

  def apply(c):
    *parents, leaf = path.split('.')
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value

  return apply
