"""Table and plot of benchmarks/distill_wikitext2.sh (Scavenging Hyena on WikiText-2).

  python benchmarks/distill_results.py RUNS_DIR OUT.json OUT.png

Student tokens count every token a student's own training saw: a distilled student's
stage-1 tokens, then its stage-2 tokens (the teacher's are not counted).
"""

import json
import os
import sys

PAPER = {'teacher (Pythia-70M)': 51.4, 'distilled Hyena': 121.2}  # arXiv 2401.17574, WikiText.
STUDENTS = [('cumulative_attn1', 'cumulative, attention init'),
            ('teacher_forced_attn1', 'teacher-forced, attention init'),
            ('cumulative_attn0', 'cumulative, random init'),
            ('teacher_forced_attn0', 'teacher-forced, random init')]


def _run(workdir: str, token_offset: int = 0):
  """Train-time eval curve and the whole-split evaluation of one workdir, or None."""
  if not os.path.exists(os.path.join(workdir, 'final_report.json')):
    return None
  with open(os.path.join(workdir, 'config.json')) as f:
    c = json.load(f)
  per_step = c['train']['global_batch_size'] * c['data']['seq_len']
  rows = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl')) if l.strip()]
  curve = [[token_offset + r['step'] * per_step, round(r['perplexity'], 3)]
           for r in rows if r['split'] == 'eval']
  evals = sorted(f for f in os.listdir(os.path.join(workdir, 'eval')) if f.endswith('.json')) \
      if os.path.isdir(os.path.join(workdir, 'eval')) else []
  out = {'steps': c['train']['num_steps'], 'tokens': token_offset + c['train']['num_steps'] *
         per_step, 'curve': curve}
  if evals:
    with open(os.path.join(workdir, 'eval', evals[-1])) as f:
      res = json.load(f)['results']
    for split in ('valid', 'test'):
      if split not in res:  # Stage-1 students: valid only.
        continue
      r = res[split]['nonoverlap']
      out[split] = {'perplexity': round(r['perplexity'], 2),
                    'bits_per_byte': round(r['bits_per_byte'], 4)}
  return out


def collect(runs: str):
  rows = {}
  for name, label in [('teacher', 'teacher (GPT-NeoX, attention)'),
                      ('scratch', 'Hyena from scratch')]:
    if (r := _run(os.path.join(runs, name))):
      rows[name] = r | {'label': label}
  for name, label in STUDENTS:
    layers = _run(os.path.join(runs, name, 'layers'))
    if layers is None:
      continue
    rows[name + '/layers'] = layers | {'label': f'distilled ({label}), stage 1 only'}
    if (e2e := _run(os.path.join(runs, name, 'e2e'), layers['tokens'])):
      rows[name + '/e2e'] = e2e | {'label': f'distilled ({label}) + fine-tune'}
  return rows


def plot(rows, out: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  if 'scratch' in rows:
    c = rows['scratch']['curve']
    ax.plot([t / 1e6 for t, _ in c], [p for _, p in c], 'k-o', ms=3, label='Hyena from scratch')
  for name, label in STUDENTS:
    c = rows.get(name + '/layers', {}).get('curve', []) + rows.get(name + '/e2e', {}).get(
        'curve', [])
    if c:
      ax.plot([t / 1e6 for t, _ in c], [p for _, p in c], '-o', ms=3, label=f'distilled: {label}')
  if rows.get('teacher', {}).get('curve'):  # Its last train-time eval: the same 32K tokens.
    ax.axhline(rows['teacher']['curve'][-1][1], color='gray', ls='--',
               label=f'teacher ({rows["teacher"]["tokens"] / 1e6:.2f}M tokens)')
  if 'cumulative_attn1/layers' in rows:
    ax.axvline(rows['cumulative_attn1/layers']['tokens'] / 1e6, color='gray', ls=':', lw=0.8)
  ax.set_yscale('log')
  ax.set_xlabel('student training tokens (millions; dotted: end of stage 1)')
  ax.set_ylabel('valid perplexity (train-time eval, 32K tokens)')
  ax.set_title('Scavenging Hyena on WikiText-2 (GPT-NeoX-20B tokenizer), 2-core CPU', fontsize=9)
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=80)


def main(runs: str, out_json: str, out_png: str) -> None:
  rows = collect(runs)
  with open(out_json, 'w') as f:
    json.dump({'paper_wikitext_perplexity': PAPER, 'rows': rows}, f, indent=1)
  plot(rows, out_png)
  print('| run | student tokens | valid ppl | test ppl | valid bits/byte | test bits/byte |')
  print('|---|---:|---:|---:|---:|---:|')
  for r in rows.values():
    v, t = r.get('valid', {}), r.get('test', {})
    print(f'| {r["label"]} | {r["tokens"] / 1e6:.2f}M | {v.get("perplexity", "-")} | '
          f'{t.get("perplexity", "-")} | {v.get("bits_per_byte", "-")} | '
          f'{t.get("bits_per_byte", "-")} |')
  print(f'wrote {out_json} {out_png}')


if __name__ == '__main__':
  if len(sys.argv) != 4:
    sys.exit(__doc__)
  main(*sys.argv[1:])
