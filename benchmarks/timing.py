"""The one timing loop the benchmarks share.

Each call is timed to completion: JAX results are blocked on (jax.block_until_ready passes
anything else, e.g. torch tensors, through unchanged), after warm-up calls that compile. JAX is
not imported here, so a torch-only process (speed_vs_torch.py's torch children) stays one.
"""

import os
import statistics
import sys
import time
from typing import Any, Callable


def _ready(x: Any) -> Any:
  jax = sys.modules.get('jax')
  return x if jax is None else jax.block_until_ready(x)


def times(fn: Callable[..., Any], *args, reps: int, warmup: int = 1
          ) -> tuple[list[float], Any]:
  """(seconds of each of `reps` calls of fn(*args), the last call's result)."""
  out = None
  for _ in range(warmup):
    out = _ready(fn(*args))
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    out = _ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return ts, out


def median_s(fn: Callable[..., Any], *args, reps: int, warmup: int = 1) -> float:
  """Median seconds of `reps` calls of fn(*args) after `warmup` calls."""
  return statistics.median(times(fn, *args, reps=reps, warmup=warmup)[0])


def chained(fn: Callable[[Any], Any], state: Any) -> Callable[[], Any]:
  """A no-argument call that runs state = fn(state): for steps whose state is donated, so
  each timed call must take the previous one's output. Read the state back with .state."""

  def call():
    call.state = fn(call.state)
    return call.state

  call.state = state
  return call


def cpu() -> dict:
  """What the timings were measured on: this machine's CPU model, core count and the matrix
  extensions its GEMMs may use (the speed tables differ across machines)."""
  info = {'cores': len(os.sched_getaffinity(0))}
  try:
    with open('/proc/cpuinfo') as f:
      text = f.read()
  except OSError:
    return info
  for line in text.splitlines():
    if line.startswith('model name') and 'model' not in info:
      info['model'] = line.split(':', 1)[1].strip()
    if line.startswith('flags') and 'extensions' not in info:
      flags = set(line.split(':', 1)[1].split())
      info['extensions'] = sorted(f for f in flags if f.startswith(('avx512', 'amx', 'avx2')))
  return info


def write_json(path: str, obj: Any) -> None:
  """Writes a benchmark log, making its directory first (a long run must not die at the end
  on a missing folder)."""
  import json  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f, indent=1)
