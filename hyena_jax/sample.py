"""Sample from a trained workdir: python -m hyena_jax.sample --config=... --workdir=...

  python -m hyena_jax.sample --config=configs/ptb_hyena.py --workdir=/tmp/runs/ptb_hyena \\
      --prompt='the company said' --max_new_tokens=40 --temperature=0.8 --top_p=0.95
  python -m hyena_jax.sample --config=configs/default.py --workdir=/tmp/hyena_default \\
      --prompt_ids=1,2,3 --temperature=0   # token ids (any dataset; greedy)

Text prompts use the run's tokenizer (text corpora); --prompt may be repeated for a batch.
Decoding uses every mixer's cache (hyena_jax.generate); --method=recompute is the slow
full-forward reference.
"""

import json
import sys

from absl import app, flags

from hyena_jax import main as cli  # Defines --config and --workdir.

flags.DEFINE_multi_string('prompt', [], 'Text prompt (repeat for a batch).')
flags.DEFINE_string('prompt_ids', None, 'Comma-separated token ids (instead of --prompt).')
flags.DEFINE_integer('max_new_tokens', 64, 'Tokens to generate per prompt.')
flags.DEFINE_float('temperature', 1.0, 'Softmax temperature; 0 = greedy.')
flags.DEFINE_integer('top_k', 0, 'Keep the k most likely tokens (0: all).')
flags.DEFINE_float('top_p', 1.0, 'Nucleus: the smallest set with this much probability.')
flags.DEFINE_integer('seed', 0, 'Sampling seed.')
flags.DEFINE_integer('num_samples', 1, 'Samples per prompt.')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
flags.DEFINE_enum('method', 'cached', ['cached', 'recompute'], 'Decoding method.')
flags.DEFINE_bool('json', False, 'Print one JSON object per sample instead of text.')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if bool(FLAGS.prompt) == bool(FLAGS.prompt_ids):
    raise app.UsageError('give --prompt (text, repeatable) or --prompt_ids (comma-separated)')
  from absl import logging  # pylint: disable=g-import-not-at-top
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from hyena_jax import config_lib  # pylint: disable=g-import-not-at-top
  from hyena_jax.eval import lm_eval_adapter as text_io  # pylint: disable=g-import-not-at-top
  from hyena_jax.eval import restore  # pylint: disable=g-import-not-at-top
  from hyena_jax.generate import generate as gen  # pylint: disable=g-import-not-at-top
  c = cli.load_config_or_exit()
  try:
    if FLAGS.prompt_ids:
      prompts = [[int(t) for t in FLAGS.prompt_ids.split(',')]]
    trainer, state, step = restore.restore_checkpoint(c, FLAGS.workdir, FLAGS.step)
    tok = getattr(trainer.dataset, 'tokenizer', None)
    if FLAGS.prompt:
      if tok is None:
        raise config_lib.ConfigError(f'data.name={c.data.name!r} has no tokenizer: use '
                                     '--prompt_ids')
      prompts = [text_io.encode_text(tok, p) or [text_io.default_prefix_id(tok)]
                 for p in FLAGS.prompt]
    model = nnx.merge(trainer.graphdef, state['params'])
    eos = text_io.end_of_text_id(tok) if tok is not None else None
    rows = [p for p in prompts for _ in range(FLAGS.num_samples)]
    new = gen.generate(model, rows, FLAGS.max_new_tokens, temperature=FLAGS.temperature,
                       top_k=FLAGS.top_k, top_p=FLAGS.top_p, seed=FLAGS.seed, eos_id=eos,
                       method=FLAGS.method)
  except ValueError as e:  # ConfigError included: bad prompt ids, too long for l_max, ...
    print(f'hyena_jax: error: {e}', file=sys.stderr)
    sys.exit(2)
  for i, (p, n) in enumerate(zip(rows, new)):
    text = text_io.decode_ids(tok, n) if tok is not None else None
    if FLAGS.json:
      print(json.dumps({'step': step, 'prompt': i // FLAGS.num_samples, 'prompt_ids': p,
                        'ids': n, 'text': text}))
    else:
      head = text_io.decode_ids(tok, p) if tok is not None else ' '.join(map(str, p))
      body = text if text is not None else ' | ' + ' '.join(map(str, n))
      print(f'--- sample {i} (step {step})\n{head}{body}')

if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
