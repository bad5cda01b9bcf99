"""Hyena operator and causal attention, fwd+bwd, against their PyTorch peers, side by side.

  python benchmarks/speed_vs_torch.py --safari /path/to/safari \
      --out benchmarks/results/speed_vs_torch_epyc.json

Kinds (B=1, D=768, float32, gradients w.r.t. every parameter and the input of
loss = sum((y * w)**2) / 2, a loss that needs y itself: with a linear sum(y * w), XLA drops the
output projection's forward, which torch still runs):
  safari           safari's standalone_hyena.HyenaOperator (order 2, filter_order 64), from a
                   checkout given by --safari (never vendored here); skipped without it
  hyena_reference  our HyenaOperator, model.hyena.impl='reference' (B x L x D, plain autodiff)
  hyena            our HyenaOperator, impl='channels_first' (the default)
  torch_sdpa       QKV projection -> torch scaled_dot_product_attention(is_causal) -> output
                   projection, 12 heads of 64 (torch's CPU flash kernel)
  attention_xla    our CausalSelfAttention, impl='xla' (the L x L einsum)
  attention        our CausalSelfAttention, impl='blockwise' (flash-style, O(L) memory)
The attention kinds all compute the same function: --rotary_pct (default 0, the plain
projections + SDPA of the issue's peer) rotates that fraction of each head's dims of q and k
on both sides (GPT-NeoX half-split; 0.25 is the LM's default, torch's then in eager ops).
Every (kind, L) runs in its own subprocess (peak RSS stays separate, torch and JAX never share
a process) pinned to the same threads: the median of --runs timed calls after one warm-up.
This machine's speed drifts 10-30% over minutes, so --rounds R repeats every kind of one L R
times in turn (kind A, B, ..., A, B, ...): the table gives the median over rounds of each
kind's time and of each round's ratio, with the ratio's range over rounds.
Peak GB is the child's peak RSS increase over its pre-warm-up RSS (ru_maxrss), the same
measure for both frameworks. The attention_xla kind is skipped above --xla_max_len.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # pylint: disable=g-import-not-at-top,wrong-import-position

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TAG = '@@RESULT '
KINDS = ('safari', 'hyena_reference', 'hyena', 'torch_sdpa', 'attention_xla', 'attention')


def _rss_gb() -> float:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e9


def _timed(step, runs: int) -> tuple[float, list[float]]:
  ts, _ = timing.times(step, reps=runs)
  return statistics.median(ts), ts


def _torch_case(kind: str, L: int, D: int, args) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  if kind == 'safari':
    sys.path.insert(0, args.safari)
    from standalone_hyena import HyenaOperator  # pylint: disable=g-import-not-at-top
    mod = HyenaOperator(d_model=D, l_max=L, order=2, filter_order=64)
  else:
    H, R = D // 64, int(64 * args.rotary_pct)
    angle = torch.arange(L, dtype=torch.float32)[:, None] / 10000.0**(
        torch.arange(0, R, 2, dtype=torch.float32) / R)[None]
    cos, sin = angle.cos(), angle.sin()

    def rotate(x):  # NeoX rotate_half on the first R dims (ops.rotary's function)
      x1, x2, rest = x[..., :R // 2], x[..., R // 2:R], x[..., R:]
      return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)

    class Attn(torch.nn.Module):

      def __init__(self):
        super().__init__()
        self.qkv, self.out = torch.nn.Linear(D, 3 * D), torch.nn.Linear(D, D)

      def forward(self, u):
        q, k, v = self.qkv(u).view(1, L, 3, H, 64).permute(2, 0, 3, 1, 4)
        if R:
          q, k = rotate(q), rotate(k)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(1, L, D))

    mod = Attn()
  u = torch.randn(1, L, D, requires_grad=True)
  w = torch.randn(1, L, D)

  def step():
    mod.zero_grad(set_to_none=True)
    u.grad = None
    ((mod(u) * w)**2).sum().div(2).backward()

  rss0 = _rss_gb()
  med, ts = _timed(step, args.runs)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
  return {'median_s': med, 'times_s': ts, 'peak_gb': peak - rss0,
          'torch': torch.__version__}


def _jax_case(kind: str, L: int, D: int, args) -> dict:
  sys.path.insert(0, _REPO)
  import hyena_jax  # pylint: disable=unused-import,g-import-not-at-top  # XLA:CPU defaults.
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from hyena_jax import config_lib  # pylint: disable=g-import-not-at-top
  from hyena_jax.models import attention, hyena  # pylint: disable=g-import-not-at-top
  c = config_lib.base_config().model
  c.update(l_max=L, d_model=D, dtype='float32')
  if kind.startswith('hyena'):
    c.hyena.impl = 'reference' if kind == 'hyena_reference' else 'channels_first'
    mod = hyena.HyenaOperator(D, c, rngs=nnx.Rngs(0))
  else:
    c.attention.update(num_heads=D // 64, impl='xla' if kind == 'attention_xla' else 'blockwise',
                       rotary_pct=args.rotary_pct)
    mod = attention.CausalSelfAttention(D, c, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(mod, nnx.Param, ...)
  u = jax.random.normal(jax.random.key(1), (1, L, D))
  w = jax.random.normal(jax.random.key(2), (1, L, D))
  grad = jax.jit(jax.grad(
      lambda p, u, w: jnp.sum((nnx.merge(graphdef, p, rest)(u) * w)**2) / 2, argnums=(0, 1)))
  compiled = grad.lower(params, u, w).compile()
  rss0 = _rss_gb()
  med, ts = _timed(lambda: jax.block_until_ready(compiled(params, u, w)), args.runs)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
  mem = compiled.memory_analysis()
  return {'median_s': med, 'times_s': ts, 'peak_gb': peak - rss0,
          'compiled_temp_gb': mem.temp_size_in_bytes / 1e9 if mem else None,
          'jax': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', '')}


def _child(args) -> None:
  kind, L = args.one.split(':')
  fn = _torch_case if kind in ('safari', 'torch_sdpa') else _jax_case
  out = fn(kind, int(L), args.d_model, args)
  print(_TAG + json.dumps({'kind': kind, 'L': int(L), **out}), flush=True)


def _run_child(kind: str, L: int, args) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), f'--one={kind}:{L}',
         f'--d_model={args.d_model}', f'--runs={args.runs}', f'--threads={args.threads}',
         f'--rotary_pct={args.rotary_pct}']
  if args.safari:
    cmd.append(f'--safari={args.safari}')
  try:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
  except subprocess.TimeoutExpired:
    return {'kind': kind, 'L': L, 'error': f'timed out after {args.timeout} s'}
  lines = [l for l in res.stdout.splitlines() if l.startswith(_TAG)]
  return (json.loads(lines[-1][len(_TAG):]) if lines else
          {'kind': kind, 'L': L, 'error': res.stderr.strip().splitlines()[-1:]})


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--lengths', default='1024,2048,4096,8192,16384,32768')
  p.add_argument('--kinds', default=','.join(KINDS))
  p.add_argument('--attention_max_len', type=int, default=8192)
  p.add_argument('--xla_max_len', type=int, default=4096)
  p.add_argument('--d_model', type=int, default=768)
  p.add_argument('--rotary_pct', type=float, default=0.0)
  p.add_argument('--runs', type=int, default=5)
  p.add_argument('--rounds', type=int, default=1)
  p.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
  p.add_argument('--safari', default=None, help='a HazyResearch/safari checkout (optional)')
  p.add_argument('--timeout', type=float, default=900)
  p.add_argument('--out', default=None)
  p.add_argument('--one', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    return _child(args)
  kinds = args.kinds.split(',')
  if 'safari' in kinds and not (args.safari and os.path.exists(
      os.path.join(args.safari, 'standalone_hyena.py'))):
    print('no --safari checkout with standalone_hyena.py: skipping the safari kind')
    kinds.remove('safari')
  rows = []
  for L in map(int, args.lengths.split(',')):
    for rnd in range(args.rounds):
      for kind in kinds:
        if 'attention' in kind or kind == 'torch_sdpa':
          if L > args.attention_max_len or (kind == 'attention_xla' and L > args.xla_max_len):
            continue
        row = {**_run_child(kind, L, args), 'round': rnd}
        rows.append(row)
        print(f"[{kind} L={L} round {rnd}] {row.get('median_s', row.get('error'))} s, "
              f"peak {row.get('peak_gb', float('nan')):.2f} GB", flush=True)
  print('\n| L | ' + ' | '.join(kinds) + ' | safari / hyena | torch_sdpa / attention |')
  print('|---' * (len(kinds) + 3) + '|')
  for L in map(int, args.lengths.split(',')):
    got = lambda k: [r for r in rows if r['kind'] == k and r['L'] == L and 'median_s' in r]
    cell = lambda k: f"{statistics.median(r['median_s'] for r in got(k)):.3f}" if got(k) else '-'

    def ratio(a, b):
      per_round = {r['round']: r['median_s'] for r in got(a)}
      rs = sorted(per_round[r['round']] / r['median_s'] for r in got(b) if r['round'] in per_round)
      if not rs:
        return '-'
      return f'{statistics.median(rs):.2f}' + (f' ({rs[0]:.2f}-{rs[-1]:.2f})' if len(rs) > 1 else '')

    print(f'| {L} | ' + ' | '.join(cell(k) for k in kinds) +
          f" | {ratio('safari', 'hyena')} | {ratio('torch_sdpa', 'attention')} |")
  if args.out:
    env = {'cpu': timing.cpu(), 'cpu_threads': args.threads, 'd_model': args.d_model,
           'rotary_pct': args.rotary_pct, 'batch': 1, 'dtype': 'float32',
           'runs': args.runs, 'rounds': args.rounds}
    timing.write_json(args.out, {'env': env, 'rows': rows})
    print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
