"""Any hyena_jax LM as an EleutherAI lm-evaluation-harness model (pip install -e .[eval]).

  python -m hyena_jax.eval.lm_eval_adapter --config=configs/NAME.py --workdir=DIR \\
      --tasks=lambada_openai,hellaswag [--limit=100] [--num_fewshot=0]

From Python (Colab): `lm_eval.simple_evaluate(model=HyenaJaxLM.from_model(model, tokenizer,
max_length=L), tasks=[...])`. Importing this module registers the name 'hyena_jax'
(`model_args='config=PATH,workdir=DIR'`); the `lm_eval` command cannot import it (the
harness has no plugin entry point for models), hence the wrapper above.

Semantics follow the harness's HF model: a (context, continuation) pair is tokenized as a
whole and split at the context's length; inputs longer than max_length lose tokens on the
left; loglikelihood_rolling scores a document in disjoint windows of max_length (its first
token conditioned on the prefix token); generate_until decodes greedily. Rows are right-padded
to a power-of-two length bucket (<= max_length) and batches to batch_size rows, so each jitted
function compiles once per bucket. Right padding is safe because every mixer is causal.

Prefix token (empty context, rolling windows): the tokenizer's end-of-text id (bpe
<|endoftext|>, word <eos>), for bytes the newline that ends every record of a byte corpus.
Single process only (no data-parallel ranks).
"""

import collections
import json
import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

try:
  from lm_eval import utils as lm_eval_utils
  from lm_eval.api.model import TemplateLM
  from lm_eval.api.registry import register_model
except ImportError as e:  # The rest of hyena_jax never imports this module.
  raise ImportError('hyena_jax.eval.lm_eval_adapter needs lm-evaluation-harness: '
                    "pip install -e '.[eval]'") from e

log = logging.getLogger(__name__)

MIN_BUCKET = 16


# --- tokenizers: raw text <-> ids, without the per-record newline / <eos> ---------------


def encode_text(tok, text: str) -> list[int]:
  """Ids of `text` alone: the codebase tokenizers append a record end, the harness must not."""
  kind = getattr(tok, 'kind', None)
  if kind in ('word', 'byte'):
    return tok.encode(text)[:-1]  # Each '\n' becomes <eos> / byte 10; drop the final one.
  if kind == 'bpe':
    return tok.tok.encode(text, add_special_tokens=False).ids
  return list(tok.encode(text))


def decode_ids(tok, ids: Sequence[int]) -> str:
  ids = [int(i) for i in ids]
  if getattr(tok, 'kind', None) == 'word':
    # A generated word follows the context after a space (the harness puts word-boundary
    # spaces in the continuation), except at the start of a line.
    parts, line_start = [], False
    for i in ids:
      parts.append('\n' if i == tok.eos_id else ('' if line_start else ' ') + tok.words[i])
      line_start = i == tok.eos_id
    return ''.join(parts)
  return tok.decode(ids)


def end_of_text_id(tok) -> int | None:
  """The id that ends a document (generation stops on it); bytes have none."""
  for name in ('eot_token_id', 'eos_id'):
    if getattr(tok, name, None) is not None:
      return int(getattr(tok, name))
  return None


def default_prefix_id(tok) -> int:
  eot = end_of_text_id(tok)
  if eot is not None:
    return eot
  ids = encode_text(tok, '\n')
  if len(ids) != 1:
    raise ValueError(f'{type(tok).__name__} has no end-of-text id and no newline token: '
                     'pass prefix_token_id=')
  return ids[0]


# --- batches of fixed shapes --------------------------------------------------------------


def bucket_len(n: int, max_length: int) -> int:
  """Smallest power of two >= n (at least MIN_BUCKET), capped at max_length."""
  b = MIN_BUCKET
  while b < n:
    b *= 2
  return min(b, max_length)


def truncate_pair(context: Sequence[int], continuation: Sequence[int],
                  max_length: int) -> list[int]:
  """The harness's left truncation: the last max_length + 1 tokens of context + continuation
  (the model reads all but the last, and scores the continuation's positions)."""
  if len(continuation) > max_length:
    raise ValueError(f'continuation of {len(continuation)} tokens exceeds max_length='
                     f'{max_length}')
  return (list(context) + list(continuation))[-(max_length + 1):]


def scoring_batch(rows: Sequence[tuple[list[int], int]], batch_size: int, length: int):
  """rows: (tokens, n_scored); inputs, targets and a mask on each row's last n_scored
  targets, right-padded to (batch_size, length); filler rows score nothing."""
  inputs_BxL = np.zeros((batch_size, length), np.int32)
  targets_BxL = np.zeros((batch_size, length), np.int32)
  mask_BxL = np.zeros((batch_size, length), np.float32)
  for r, (tokens, n_scored) in enumerate(rows):
    n = len(tokens) - 1
    inputs_BxL[r, :n], targets_BxL[r, :n] = tokens[:-1], tokens[1:]
    mask_BxL[r, n - n_scored:n] = 1.0
  return inputs_BxL, targets_BxL, mask_BxL


def make_fns(graphdef, vocab_size: int | None):
  """Jitted (score, next_token) of the model `graphdef` (state passed in, so it is traced
  once per shape whatever the weights)."""

  def logits(state, tokens_BxL):
    out = nnx.merge(graphdef, state)(tokens_BxL)
    return out if vocab_size is None else out[..., :vocab_size]  # Drop the padding rows.

  def score(state, inputs_BxL, targets_BxL, mask_BxL):
    logits_BxLxV = logits(state, inputs_BxL)
    logp_BxLxV = jax.nn.log_softmax(logits_BxLxV, axis=-1)
    logp_BxL = jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    greedy_BxL = (jnp.argmax(logits_BxLxV, axis=-1) == targets_BxL) | (mask_BxL == 0)
    return (logp_BxL * mask_BxL).sum(axis=1), greedy_BxL.all(axis=1)

  def next_token(state, tokens_BxL, last_B):
    logits_BxLxV = logits(state, tokens_BxL)
    return jnp.argmax(logits_BxLxV[jnp.arange(tokens_BxL.shape[0]), last_B], axis=-1)

  return jax.jit(score), jax.jit(next_token)


def _as_int(value, default: int) -> int:
  try:
    return int(value)
  except (TypeError, ValueError):  # The harness may pass batch_size='auto'.
    return default


# --- the harness model --------------------------------------------------------------------


@register_model('hyena_jax')
class HyenaJaxLM(TemplateLM):
  """A hyena_jax LM (any nnx module mapping tokens_BxL to logits) with its tokenizer."""

  def __init__(self, config=None, workdir: str | None = None, step: int | None = None, *,
               model: nnx.Module | None = None, tokenizer: Any = None,
               max_length: int | None = None, batch_size: int | str = 8,
               max_gen_toks: int = 256, prefix_token_id: int | None = None, **unused):
    """Either `config` (a ConfigDict or 'PATH[:ARG]') + `workdir` (+ `step`, default the
    latest checkpoint) or an in-memory `model` + `tokenizer` + `max_length`."""
    super().__init__()
    del unused  # device, max_batch_size: passed by the harness, meaningless here.
    self.step = None  # The checkpoint step, when restored from a workdir.
    if model is None:
      if config is None or workdir is None:
        raise ValueError('HyenaJaxLM needs config= and workdir=, or model= and tokenizer=')
      c = _load_config(config)
      model, tokenizer, self.step = restore(c, workdir, None if step is None else int(step))
      max_length = int(max_length or c.model.l_max)
      if max_length > c.model.l_max:
        raise ValueError(f'max_length={max_length} exceeds model.l_max={c.model.l_max}')
    elif tokenizer is None or not max_length:
      raise ValueError('an in-memory model needs tokenizer= and max_length=')
    vocab_size = getattr(model, 'vocab_size', None)
    tok_vocab = getattr(tokenizer, 'vocab_size', None)
    if vocab_size is not None and tok_vocab is not None and tok_vocab > vocab_size:
      raise ValueError(f'the tokenizer has {tok_vocab} ids, the model only {vocab_size}')
    self.tokenizer = tokenizer
    self.max_length = int(max_length)
    self.batch_size = max(_as_int(batch_size, 8), 1)
    self.max_gen_toks = int(max_gen_toks)
    self._eot = end_of_text_id(tokenizer)
    self._prefix = int(prefix_token_id) if prefix_token_id is not None else (
        default_prefix_id(tokenizer))
    graphdef, self._state = nnx.split(model)
    self._score, self._next_token = make_fns(graphdef, vocab_size)
    self._model = model

  @classmethod
  def from_model(cls, model: nnx.Module, tokenizer, max_length: int, **kw) -> 'HyenaJaxLM':
    return cls(model=model, tokenizer=tokenizer, max_length=max_length, **kw)

  @classmethod
  def from_workdir(cls, config, workdir: str, step: int | None = None, **kw) -> 'HyenaJaxLM':
    return cls(config, workdir, step, **kw)

  # TemplateLM's hooks: it tokenizes (context, continuation) pairs the harness's way.

  @property
  def eot_token_id(self) -> int:
    # TemplateLM reads it as the prefix of an empty context; generation stops on self._eot.
    return self._prefix

  def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
    del add_special_tokens, kwargs
    return encode_text(self.tokenizer, string)

  def tok_decode(self, ids: Sequence[int]) -> str:
    return decode_ids(self.tokenizer, ids)

  def score_tokens(self, rows: Sequence[tuple[list[int], int]]) -> list[tuple[float, bool]]:
    """(sum log p, all greedy) of each row's last n_scored tokens given the ones before.

    Rows are run longest first so that a batch shares one length bucket.
    """
    out: list[Any] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    for c in range(0, len(order), self.batch_size):
      idx = order[c:c + self.batch_size]
      length = bucket_len(max(len(rows[i][0]) - 1 for i in idx), self.max_length)
      batch = scoring_batch([rows[i] for i in idx], self.batch_size, length)
      logp_B, greedy_B = jax.device_get(self._score(self._state, *batch))
      for r, i in enumerate(idx):
        out[i] = (float(logp_B[r]), bool(greedy_B[r]))
    return out

  def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
    del disable_tqdm, kwargs
    rows = [(truncate_pair(ctx, cont, self.max_length), len(cont)) for _, ctx, cont in requests]
    # An empty continuation: nothing to score, log 1 (the HF model asserts instead).
    keep = [i for i, (_, n) in enumerate(rows) if n > 0]
    scored = dict(zip(keep, self.score_tokens([rows[i] for i in keep])))
    res = [scored.get(i, (0.0, True)) for i in range(len(rows))]
    for (pair, _, _), r in zip(requests, res):
      if pair is not None:
        self.cache_hook.add_partial('loglikelihood', pair, r)
    return res

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    rows, owner = [], []
    for k, (string,) in enumerate(req.args for req in requests):
      windows = lm_eval_utils.get_rolling_token_windows(
          token_list=self.tok_encode(string), prefix_token=self._prefix,
          max_seq_len=self.max_length, context_len=1)
      for ctx, cont in map(lm_eval_utils.make_disjoint_window, windows):
        rows.append((truncate_pair(ctx, cont, self.max_length), len(cont)))
        owner.append(k)
    totals = [0.0] * len(requests)
    for k, (logp, _) in zip(owner, self.score_tokens(rows) if rows else []):
      totals[k] += logp
    for req, t in zip(requests, totals):
      self.cache_hook.add_partial('loglikelihood_rolling', req.args, t)
    return totals

  def _gen_kwargs(self, gen_kwargs: dict) -> tuple[list[str], int]:
    kw = dict(gen_kwargs or {})
    until = kw.get('until') or []
    until = [until] if isinstance(until, str) else list(until)
    n = next((kw[k] for k in ('max_gen_toks', 'max_new_tokens', 'max_tokens') if k in kw),
             self.max_gen_toks)
    if kw.get('do_sample') or float(kw.get('temperature') or 0.0) > 0.0:
      log.warning('hyena_jax: sampling is not implemented, decoding greedily (%s)', kw)
    return until, int(n)

  def greedy(self, contexts: Sequence[list[int]], until: Sequence[str],
             max_gen_toks: int) -> list[list[int]]:
    """Greedy continuations (ids) of each context: up to max_gen_toks, the end-of-text id
    (not returned) or an `until` string. Models of this codebase decode with their caches
    (hyena_jax.generate, shapes bucketed); any other module recomputes the forward per token."""
    if hasattr(self._model, 'decode'):
      return self._cached_greedy(contexts, until, max_gen_toks)
    out: list[Any] = [None] * len(contexts)
    order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
    for c in range(0, len(order), self.batch_size):
      idx = order[c:c + self.batch_size]
      seqs = [list(contexts[i]) for i in idx]
      length = bucket_len(max(map(len, seqs)) + max_gen_toks - 1, self.max_length)
      gen = [[] for _ in idx]
      active = [True] * len(idx)
      for _ in range(max_gen_toks):
        tokens_BxL = np.zeros((self.batch_size, length), np.int32)
        last_B = np.zeros(self.batch_size, np.int32)
        for r, s in enumerate(seqs):
          tokens_BxL[r, :len(s)], last_B[r] = s, len(s) - 1
        next_B = jax.device_get(self._next_token(self._state, tokens_BxL, last_B))
        for r in range(len(idx)):
          if not active[r]:
            continue
          t = int(next_B[r])
          if self._eot is not None and t == self._eot:
            active[r] = False
            continue
          seqs[r].append(t)
          gen[r].append(t)
          text = self.tok_decode(gen[r])
          active[r] = not any(u and u in text for u in until)
        if not any(active):
          break
      for r, i in enumerate(idx):
        out[i] = gen[r]
    return out

  def _cached_greedy(self, contexts, until, max_gen_toks):
    from hyena_jax.generate import generate as gen  # pylint: disable=g-import-not-at-top
    out: list[Any] = [None] * len(contexts)
    order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
    for c in range(0, len(order), self.batch_size):
      idx = order[c:c + self.batch_size]
      rows = [list(contexts[i]) for i in idx]
      rows += [[self._prefix]] * (self.batch_size - len(rows))  # One compiled batch size.
      buffer_len = bucket_len(len(rows[0]) + max_gen_toks, self.max_length)
      prefill = 1 << (min(map(len, rows)).bit_length() - 1)  # Power of two <= shortest.
      new = gen.generate(self._model, rows, max_gen_toks, temperature=0.0,
                         buffer_len=max(buffer_len, len(rows[0]) + max_gen_toks),
                         prefill_len=prefill)
      for r, i in enumerate(idx):
        kept = []
        for t in new[r]:
          if self._eot is not None and t == self._eot:
            break
          kept.append(t)
          text = self.tok_decode(kept)
          if any(u and u in text for u in until):
            break
        out[i] = kept
    return out

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    groups = collections.defaultdict(list)  # Same (until, max_gen_toks): one decoding loop.
    for k, req in enumerate(requests):
      until, n = self._gen_kwargs(req.args[1])
      groups[(tuple(until), n)].append(k)
    res: list[Any] = [None] * len(requests)
    for (until, n), ks in groups.items():
      max_ctx = self.max_length - n
      if max_ctx <= 0:
        raise ValueError(f'max_gen_toks={n} leaves no context within max_length='
                         f'{self.max_length}')
      contexts = [(self.tok_encode(requests[k].args[0]) or [self._prefix])[-max_ctx:]
                  for k in ks]
      for k, ids in zip(ks, self.greedy(contexts, until, n)):
        text = self.tok_decode(ids)
        for u in until:  # Cut at the first stop string, as the HF model does.
          if u:
            text = text.split(u)[0]
        res[k] = text
        self.cache_hook.add_partial('generate_until', requests[k].args, text)
    return res


# --- checkpoints --------------------------------------------------------------------------


def _load_config(config):
  if not isinstance(config, str):
    return config
  from hyena_jax import config_lib  # pylint: disable=g-import-not-at-top
  path, _, arg = config.partition(':')
  return config_lib.load_config_file(path, arg or None)


def restore(c, workdir: str, step: int | None = None):
  """(model, tokenizer, step) of a text-corpus checkpoint, as hyena_jax.evaluate restores it
  (building the dataset gives the tokenizer and checks the checkpoint's data signature)."""
  from hyena_jax import config_lib  # pylint: disable=g-import-not-at-top
  from hyena_jax.eval import restore as restore_lib  # pylint: disable=g-import-not-at-top

  def text_only(trainer):
    if not hasattr(trainer.dataset, 'tokenizer'):
      raise config_lib.ConfigError(f'data.name={c.data.name!r} is not a text corpus: '
                                   'lm-evaluation-harness needs a tokenizer')

  trainer, state, step = restore_lib.restore_checkpoint(c, workdir, step, check=text_only)
  ds = trainer.dataset
  return nnx.merge(trainer.graphdef, state['params']), ds.tokenizer, int(step)


# --- command line -------------------------------------------------------------------------


def main(argv):
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  import lm_eval  # pylint: disable=g-import-not-at-top
  from hyena_jax import main as cli  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  if not f['verbosity'].present:
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every restore at INFO.
  lm = HyenaJaxLM.from_workdir(cli.load_config_or_exit(), f.workdir, f.step,
                               batch_size=f.batch_size, max_gen_toks=f.max_gen_toks,
                               max_length=f.max_length)
  tasks = None
  if f.include_path:  # Task YAMLs of your own (a local dataset needs no download).
    from lm_eval.tasks import TaskManager  # pylint: disable=g-import-not-at-top
    tasks = TaskManager(include_path=f.include_path)
  out = lm_eval.simple_evaluate(model=lm, tasks=f.tasks.split(','), num_fewshot=f.num_fewshot,
                                limit=f.limit, log_samples=False, task_manager=tasks)
  print(lm_eval_utils.make_table(out))
  path = f.output or os.path.join(f.workdir, 'eval', f'lm_eval_step_{lm.step}.json')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as fp:
    json.dump({'step': lm.step, 'results': out['results'], 'config': out.get('config')}, fp,
              indent=2, default=str)
  print(f'wrote {path}')


if __name__ == '__main__':
  from absl import app as _app, flags as _flags  # pylint: disable=g-import-not-at-top
  from hyena_jax import main as _cli  # pylint: disable=g-import-not-at-top  (defines --config)
  _flags.DEFINE_string('tasks', None, 'Comma-separated lm-evaluation-harness task names.')
  _flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  _flags.DEFINE_integer('num_fewshot', None, 'Few-shot examples (default: each task\'s own).')
  _flags.DEFINE_float('limit', None, 'At most this many documents per task (< 1: a fraction).')
  _flags.DEFINE_integer('batch_size', 8, 'Rows per forward pass.')
  _flags.DEFINE_integer('max_gen_toks', 256, 'Default generation length of generate_until.')
  _flags.DEFINE_integer('max_length', None, 'Context window (default: model.l_max).')
  _flags.DEFINE_string('include_path', None, 'A directory of extra task YAML files.')
  _flags.DEFINE_string('output', None, 'Results JSON (default WORKDIR/eval/lm_eval_step_N.json).')
  _flags.mark_flags_as_required(['tasks'])
  _app.run(main, flags_parser=_cli.parse_flags)
