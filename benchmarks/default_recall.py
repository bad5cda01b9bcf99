"""The README's first command, timed, and its log (benchmarks/results/default_recall.json).

  python benchmarks/default_recall.py                       # seed 0, the default Hyena path
  python benchmarks/default_recall.py --seed 1 --impl reference --out LOG --append
  python benchmarks/default_recall.py --seed 2 --override optim.lr=3e-3 --workdir W --out LOG --append

Runs `python -m hyena_jax.main --config=configs/default.py --workdir=W [--config.seed=S]
[--config.model.hyena.impl=I]` from scratch (W is removed first) under /usr/bin/time -v and
keeps its final report, every held-out evaluation (W/metrics.jsonl), wall clock and peak RSS.
--collect reads a workdir that the same command already wrote (and, with --time_log, the
/usr/bin/time -v output it printed) instead of running it again. --append adds the run to the
log's 'runs' list (the seed table in the README) instead of overwriting the log.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _time_fields(text: str) -> dict:
  wall = re.search(r'Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)', text)
  rss = re.search(r'Maximum resident set size \(kbytes\): (\d+)', text)
  if not wall or not rss:
    return {}
  h, m, s = (float(x) if x else 0.0 for x in wall.groups())
  return {'wall_clock_s_including_startup': 3600 * h + 60 * m + s,
          'peak_rss_kb_usr_bin_time': int(rss.group(1))}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', default=None, help='default /tmp/hyena_default[_sS][_impl]')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--impl', default='channels_first')
  p.add_argument('--override', action='append', default=[],
                 help='a config override such as optim.lr=3e-3 (repeatable); tried variants')
  p.add_argument('--collect', action='store_true')
  p.add_argument('--time_log', default=None)
  p.add_argument('--append', action='store_true')
  p.add_argument('--out', default=os.path.join(_REPO, 'benchmarks/results/default_recall.json'))
  a = p.parse_args(argv)
  workdir = a.workdir or '/tmp/hyena_default' + (f'_s{a.seed}' if a.seed else '') + (
      '' if a.impl == 'channels_first' else f'_{a.impl}')
  cmd = ['python', '-m', 'hyena_jax.main', '--config=configs/default.py', f'--workdir={workdir}']
  cmd += [f'--config.seed={a.seed}'] if a.seed else []
  cmd += [] if a.impl == 'channels_first' else [f'--config.model.hyena.impl={a.impl}']
  cmd += [f'--config.{o}' for o in a.override]
  timing = {}
  if a.collect:
    if a.time_log:
      with open(a.time_log) as f:
        timing = _time_fields(f.read())
  else:
    shutil.rmtree(workdir, ignore_errors=True)
    res = subprocess.run(['/usr/bin/time', '-v', sys.executable, *cmd[1:]], cwd=_REPO,
                         capture_output=True, text=True, check=True)
    timing = _time_fields(res.stderr)
  with open(os.path.join(workdir, 'final_report.json')) as f:
    report = json.load(f)
  evals = []
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      r = json.loads(line)
      if r.get('split') == 'eval':
        evals.append({'step': r['step'], 'loss': r['loss'], 'accuracy': r['accuracy']})
  run = {'command': ' '.join(cmd), **timing, 'final_report': report, 'eval': evals}
  if a.append:
    log = {'runs': []}
    if os.path.exists(a.out):
      with open(a.out) as f:
        log = json.load(f)
    log['runs'].append(run)
  else:
    log = run
  with open(a.out, 'w') as f:
    json.dump(log, f, indent=1)
  print(f"{' '.join(cmd)}: final held-out accuracy {report['eval_accuracy']:.4f}", timing)


if __name__ == '__main__':
  main()
