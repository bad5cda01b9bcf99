"""Hyena operator vs causal softmax attention: fwd+bwd time and peak memory vs length.

Full run (from the repo root, with the venv active):

  python benchmarks/hyena_vs_attention.py \
      --lengths 1024,2048,4096,8192,16384,32768,65536 --d_model 768 --batch 1 \
      --kinds hyena,attention --max_seconds_per_case 900 \
      --out benchmarks/results/hyena_vs_attention_cpu.json

What it measures, for each (kind, L) at batch B and width D (float32):
  * hyena: `HyenaOperator` (order 2, default filter settings, l_max = L).
  * attention: QKV projection -> `jax.nn.dot_product_attention(q, k, v, is_causal=True)`
    with D/64 heads of 64 -> output projection, i.e. a full mixer layer like Hyena's.
  * fwd+bwd: `jax.jit(jax.grad(loss, argnums=(0, 1)))` with loss = sum(y * w), y the mixer
    output and w a fixed random B x L x D projection; gradients w.r.t. the parameters AND
    the input u. Compiled once, one warm-up call, then the median of N timed calls
    (N >= --min_runs, more until --min_time s are spent, at most --max_runs).
  * peak GB: the compiled executable's memory_analysis() (temp + argument + output bytes)
    and, as a second measure, the child process's peak RSS increase over warm-up + timed
    calls (ru_maxrss, with the high-water mark reset after compilation via
    /proc/self/clear_refs so the compiler's own peak does not mask the run's).

Every (kind, L) runs in a fresh subprocess (`--one=kind:L`) so RSS peaks never mix; the
parent collects one JSON line per child. A case whose compiled footprint exceeds 80% of
MemAvailable is reported as "does not fit" without running; a child that exceeds
--max_seconds_per_case is reported as "timed out".
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)  # Run as a plain script from anywhere; hyena_jax is not installed.

# Imported before JAX creates its backend so that the package's XLA:CPU defaults apply to
# both kinds, as they do in training (HYENA_JAX_XLA_DEFAULTS=0 measures without them).
import hyena_jax  # pylint: disable=unused-import,g-import-not-at-top,wrong-import-position

_RESULT_TAG = '@@RESULT '
_GB = 1e9
_DEFAULT_LENGTHS = '1024,2048,4096,8192,16384,32768,65536'


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--lengths', default=_DEFAULT_LENGTHS, help='comma-separated sequence lengths')
  p.add_argument('--d_model', type=int, default=768)
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--head_dim', type=int, default=64, help='attention head width')
  p.add_argument('--kinds', default='hyena,attention', help='comma-separated: hyena,attention')
  p.add_argument('--out', default=os.path.join(_REPO, 'benchmarks', 'results',
                                                'hyena_vs_attention_cpu.json'))
  p.add_argument('--max_seconds_per_case', type=float, default=900.0,
                 help='wall-clock limit of one child (compile + warm-up + timed runs)')
  p.add_argument('--min_time', type=float, default=3.0, help='keep timing until this many s')
  p.add_argument('--min_runs', type=int, default=3)
  p.add_argument('--max_runs', type=int, default=20)
  p.add_argument('--mem_fraction', type=float, default=0.8,
                 help='a case fits if its compiled footprint <= this fraction of MemAvailable')
  # Testing aids: a fake memory budget exercises the "does not fit" path; --one is the
  # child mode the parent uses.
  p.add_argument('--mem_budget_gb', type=float, default=None, help=argparse.SUPPRESS)
  p.add_argument('--one', default=None, help=argparse.SUPPRESS)
  return p.parse_args(argv)


def _mem_available_bytes() -> int:
  with open('/proc/meminfo') as f:
    for line in f:
      if line.startswith('MemAvailable:'):
        return int(line.split()[1]) * 1024
  raise RuntimeError('MemAvailable not found in /proc/meminfo')


def _vm_rss_bytes() -> int:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) * 1024
  return 0


def _max_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB.


def _reset_peak_rss() -> bool:
  """Resets the RSS high-water mark (Linux >= 4.0); False where that is not allowed."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def _env_info() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  return {
      'jax_version': jax.__version__,
      'backend': jax.default_backend(),
      'device_kind': jax.devices()[0].device_kind,
      'num_devices': jax.device_count(),
      'cpu_count': os.cpu_count(),
      'cpu_affinity': len(os.sched_getaffinity(0)),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'mem_available_gb': _mem_available_bytes() / _GB,
  }


# ----------------------------------------------------------------------------- child side


def _make_model(kind: str, L: int, d_model: int, head_dim: int):
  """The mixer under test, built with nnx.Rngs(0)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from hyena_jax import config_lib  # pylint: disable=g-import-not-at-top
  from hyena_jax.models import hyena  # pylint: disable=g-import-not-at-top

  if kind == 'hyena':
    cfg = config_lib.base_config().model
    cfg.l_max = L
    cfg.d_model = d_model
    cfg.dtype = 'float32'
    return hyena.HyenaOperator(d_model, cfg, rngs=nnx.Rngs(0))

  if kind != 'attention':
    raise ValueError(f'unknown kind {kind!r}; choose hyena or attention')
  if d_model % head_dim:
    raise ValueError(f'd_model {d_model} is not a multiple of head_dim {head_dim}')

  class CausalSelfAttention(nnx.Module):
    """QKV projection -> causal softmax attention -> output projection."""

    def __init__(self, d: int, num_heads: int, *, rngs: nnx.Rngs):
      self.num_heads = num_heads
      # Same init as Hyena's projections, so both mixers start from comparable weights.
      self.qkv_proj = hyena.dense(d, 3 * d, rngs)
      self.out_proj = hyena.dense(d, d, rngs)

    def __call__(self, u_BxLxD: jax.Array) -> jax.Array:
      B, L, D = u_BxLxD.shape
      H = self.num_heads
      qkv_BxLx3xHxDh = self.qkv_proj(u_BxLxD).reshape(B, L, 3, H, D // H)
      q_BxLxHxDh, k_BxLxHxDh, v_BxLxHxDh = (qkv_BxLx3xHxDh[:, :, i] for i in range(3))
      o_BxLxHxDh = jax.nn.dot_product_attention(q_BxLxHxDh, k_BxLxHxDh, v_BxLxHxDh,
                                                is_causal=True)
      return self.out_proj(o_BxLxHxDh.reshape(B, L, D))

  return CausalSelfAttention(d_model, d_model // head_dim, rngs=nnx.Rngs(0))


def _run_one(args: argparse.Namespace) -> dict:
  """Measures one (kind, L) in this process; returns the JSON-able record."""
  t_start = time.perf_counter()
  kind, L = args.one.split(':')
  L, B, D = int(L), args.batch, args.d_model
  rec = {'kind': kind, 'L': L, 'batch': B, 'd_model': D,
         'xla_flags': os.environ.get('XLA_FLAGS', '')}

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  # Abstract model: compile and size the case before a single large buffer exists.
  abstract = nnx.eval_shape(lambda: _make_model(kind, L, D, args.head_dim))
  graphdef, params_abs, rest_abs = nnx.split(abstract, nnx.Param, ...)
  rec['num_params'] = int(sum(math.prod(x.shape) for x in jax.tree.leaves(params_abs)))

  def loss_fn(params, u_BxLxD, rest, w_BxLxD):
    y_BxLxD = nnx.merge(graphdef, params, rest)(u_BxLxD)
    return jnp.sum(y_BxLxD.astype(jnp.float32) * w_BxLxD)

  grad_fn = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))
  x_abs = jax.ShapeDtypeStruct((B, L, D), jnp.float32)
  t0 = time.perf_counter()
  compiled = grad_fn.lower(params_abs, x_abs, rest_abs, x_abs).compile()
  rec['compile_s'] = time.perf_counter() - t0

  ma = compiled.memory_analysis()
  mem = {k: int(getattr(ma, f'{k}_size_in_bytes', 0) or 0)
         for k in ('temp', 'argument', 'output', 'alias', 'generated_code')}
  rec['memory_analysis_bytes'] = mem
  needed = mem['temp'] + mem['argument'] + mem['output'] - mem['alias']
  rec['compiled_peak_gb'] = needed / _GB
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    rec['flops'] = float(cost.get('flops', float('nan')))
  except Exception:  # pylint: disable=broad-except
    rec['flops'] = None  # Optional extra; some backends do not provide it.

  rec['mem_available_gb'] = _mem_available_bytes() / _GB
  budget = (args.mem_budget_gb * _GB if args.mem_budget_gb is not None
            else args.mem_fraction * _mem_available_bytes())
  rec['mem_budget_gb'] = budget / _GB
  if needed > budget:
    rec['status'] = 'does_not_fit'
    return rec

  # The compiler's own RSS peak would otherwise hide the run's peak (ru_maxrss is monotone).
  rec['rss_reset'] = _reset_peak_rss()
  rss_before = _vm_rss_bytes()
  maxrss_before = _max_rss_bytes()

  _, params, rest = nnx.split(_make_model(kind, L, D, args.head_dim), nnx.Param, ...)
  ku, kw = jax.random.split(jax.random.key(0))
  u_BxLxD = jax.random.normal(ku, (B, L, D), jnp.float32)
  w_BxLxD = jax.random.normal(kw, (B, L, D), jnp.float32)

  def call():
    return jax.block_until_ready(compiled(params, u_BxLxD, rest, w_BxLxD))

  t0 = time.perf_counter()
  call()
  rec['warmup_s'] = time.perf_counter() - t0

  # Stop early rather than time out when single calls are slow; at least one timed call.
  deadline = t_start + 0.9 * args.max_seconds_per_case
  times = []
  while len(times) < args.max_runs:
    if times and (len(times) >= args.min_runs and sum(times) >= args.min_time):
      break
    last = times[-1] if times else rec['warmup_s']
    if times and time.perf_counter() + last > deadline:
      break
    t0 = time.perf_counter()
    call()
    times.append(time.perf_counter() - t0)

  rec['times_s'] = times
  rec['n_runs'] = len(times)
  rec['time_median_s'] = statistics.median(times)
  rec['rss_before_gb'] = rss_before / _GB
  rec['rss_peak_gb'] = _max_rss_bytes() / _GB
  # Without a reset, ru_maxrss may still carry the compile peak: the increase is then a bound.
  rec['rss_increase_gb'] = (_max_rss_bytes() - (rss_before if rec['rss_reset']
                                                else maxrss_before)) / _GB
  rec['status'] = 'ok'
  return rec


# ---------------------------------------------------------------------------- parent side


def _run_child(args: argparse.Namespace, kind: str, L: int) -> dict:
  """Runs one case in a fresh interpreter; never raises."""
  cmd = [sys.executable, os.path.abspath(__file__), f'--one={kind}:{L}',
         f'--d_model={args.d_model}', f'--batch={args.batch}', f'--head_dim={args.head_dim}',
         f'--max_seconds_per_case={args.max_seconds_per_case}', f'--min_time={args.min_time}',
         f'--min_runs={args.min_runs}', f'--max_runs={args.max_runs}',
         f'--mem_fraction={args.mem_fraction}']
  if args.mem_budget_gb is not None:
    cmd.append(f'--mem_budget_gb={args.mem_budget_gb}')
  base = {'kind': kind, 'L': L, 'batch': args.batch, 'd_model': args.d_model}
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=args.max_seconds_per_case)
  except subprocess.TimeoutExpired:
    return {**base, 'status': 'timed_out', 'limit_s': args.max_seconds_per_case,
            'wall_s': time.perf_counter() - t0}
  wall = time.perf_counter() - t0
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith(_RESULT_TAG):
      return {**json.loads(line[len(_RESULT_TAG):]), 'wall_s': wall}
  reason = f'exit code {proc.returncode}'
  if proc.returncode < 0:
    reason = f'killed by signal {-proc.returncode}' + (
        ' (likely out of memory)' if proc.returncode == -9 else '')
  return {**base, 'status': 'error', 'error': reason, 'wall_s': wall,
          'stderr_tail': proc.stderr[-2000:]}


def _time_cell(r: dict | None) -> str:
  if r is None:
    return 'n/a'
  status = r['status']
  if status == 'ok':
    return f"{r['time_median_s']:.4g}"
  if status == 'does_not_fit':
    return f"does not fit (needs {r['compiled_peak_gb']:.2f} GB)"
  if status == 'timed_out':
    return f"timed out (>{r['limit_s']:.0f} s)"
  return f"error ({r.get('error', '?')})"


def _peak_cell(r: dict | None) -> str:
  if r is None or r['status'] != 'ok':
    return '-'
  return f"{r['compiled_peak_gb']:.3f} (RSS {r['rss_increase_gb']:.3f})"


def _ratio_cell(h: dict | None, a: dict | None) -> str:
  if h and a and h['status'] == a['status'] == 'ok':
    return f"{a['time_median_s'] / h['time_median_s']:.2f}"
  return '-'


def _table(env: dict, results: list[dict], lengths: list[int]) -> str:
  by = {(r['kind'], r['L']): r for r in results}
  lines = [
      f"jax {env['jax_version']} | backend {env['backend']} | device {env['device_kind']} | "
      f"CPU threads {env['cpu_affinity']} (of {env['cpu_count']}) | "
      f"XLA_FLAGS={env['xla_flags'] or '(unset)'}",
      '',
      '| L | Hyena fwd+bwd s | Hyena peak GB | Attention fwd+bwd s | Attention peak GB '
      '| attention/hyena |',
      '|---|---|---|---|---|---|',
  ]
  for L in lengths:
    h, a = by.get(('hyena', L)), by.get(('attention', L))
    lines.append(f'| {L} | {_time_cell(h)} | {_peak_cell(h)} | {_time_cell(a)} | '
                 f'{_peak_cell(a)} | {_ratio_cell(h, a)} |')
  lines += ['', 'Time: median fwd+bwd seconds. Peak GB: compiled memory_analysis '
            '(temp+argument+output); RSS: child peak RSS increase during the runs.']
  return '\n'.join(lines)


def _write(path: str, env: dict, args: argparse.Namespace, results: list[dict]):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump({'env': env, 'args': vars(args), 'results': results}, f, indent=1)


def main(argv=None):
  args = _parse_args(argv)
  if args.one:
    try:
      rec = _run_one(args)
    except Exception as e:  # pylint: disable=broad-except
      kind, _, L = args.one.partition(':')
      rec = {'kind': kind, 'L': int(L), 'batch': args.batch, 'd_model': args.d_model,
             'status': 'error', 'error': f'{type(e).__name__}: {e}'[:500]}
    print(_RESULT_TAG + json.dumps(rec), flush=True)
    return

  lengths = [int(x) for x in args.lengths.split(',') if x]
  kinds = [k for k in args.kinds.split(',') if k]
  unknown = sorted(set(kinds) - {'hyena', 'attention'})
  if unknown:
    sys.exit(f'--kinds: unknown {unknown}; choose from hyena,attention')
  env = _env_info()
  results = []
  for L in lengths:
    for kind in kinds:
      r = _run_child(args, kind, L)
      results.append(r)
      print(f'[{kind} L={L}] fwd+bwd s: {_time_cell(r)}, peak GB: {_peak_cell(r)}, '
            f'child wall {r["wall_s"]:.1f} s', file=sys.stderr, flush=True)
      _write(args.out, env, args, results)  # Partial results survive an interrupted sweep.
  print(_table(env, results, lengths))
  print(f'\nraw results: {args.out}')


if __name__ == '__main__':
  main()
