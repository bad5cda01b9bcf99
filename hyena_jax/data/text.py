"""Text LM data: tfds array_record corpus -> cached token stream -> grain batches on the mesh.

The tokenized splits are cached as .npy next to the prepared tfds data (one pass over the
corpus, then memory-mapped). Training sequences are the stream cut into non-overlapping
windows of seq_len + 1 tokens (inputs and shifted targets), so an epoch predicts every
token once. Window order is a grain shuffle by seed (a fresh order each epoch). Every host
walks the same global order and reads only its rows of each global batch, so the batches do
not depend on the number of hosts. The grain iterator state goes into each checkpoint.
"""

import json
import os

import grain
import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from hyena_jax import config_lib
from hyena_jax.data import text_builders, tokenizers
from hyena_jax.data.tokenizers import DataError
from hyena_jax.eval import perplexity

TEXT_DATASETS = tuple(text_builders.BUILDERS)
TOKENIZERS = ('word', 'bpe', 'byte')


def data_dir(c: ml_collections.ConfigDict) -> str:
  return os.path.expanduser(c.data.data_dir or os.environ.get('TFDS_DATA_DIR')
                            or '~/tensorflow_datasets')


def _check(ok: bool, msg: str) -> None:
  if not ok:
    raise config_lib.ConfigError(msg)


def validate(c: ml_collections.ConfigDict, device_count: int) -> None:
  """Cheap checks before anything is prepared or compiled."""
  del device_count
  d = c.data
  _check(d.tokenizer in TOKENIZERS,
         f'data.tokenizer={d.tokenizer!r} is unknown; choose from {list(TOKENIZERS)}')
  if d.tokenizer == 'bpe':
    _check(bool(d.tokenizer_path), 'data.tokenizer=bpe needs data.tokenizer_path (a tokenizers '
           'JSON file, e.g. ../shared/data/tokenizers/gpt2_tokenizer.json)')
    _check(os.path.isfile(d.tokenizer_path),
           f'data.tokenizer_path={d.tokenizer_path!r}: no such file')
  if d.tokenizer == 'word':
    _check(d.name != 'openwebtext', 'data.tokenizer=word is for line corpora; openwebtext needs '
           'bpe or byte')
  if d.source_dir:
    _check(os.path.isdir(d.source_dir), f'data.source_dir={d.source_dir!r}: no such directory')
  if d.name == 'text_files':
    for s in text_builders.SPLITS:
      _check(bool(d.files[s]), f'data.name=text_files needs data.files.{s} (a text file path)')
      _check(os.path.isfile(d.files[s]), f'data.files.{s}={d.files[s]!r}: no such file')
  for s in (d.eval_split,):
    _check(s in text_builders.SPLITS, f'data.eval_split={s!r} must be one of '
           f'{list(text_builders.SPLITS)}')


def _load_tokenizer(c, builder, cache: str):
  kind = c.data.tokenizer
  if kind == 'bpe':
    return tokenizers.BpeTokenizer(c.data.tokenizer_path)
  if kind == 'byte':
    return tokenizers.ByteTokenizer()
  path = os.path.join(cache, 'vocab.txt')
  if os.path.exists(path):
    return tokenizers.WordTokenizer.load(path)
  tok = tokenizers.WordTokenizer.build(_records(builder, 'train'))
  tok.save(path)
  return tok


def _records(builder, split: str, chunk: int = 8192):
  src = builder.as_data_source(split=split)
  for i in range(0, len(src), chunk):
    for r in src.__getitems__(list(range(i, min(i + chunk, len(src))))):
      yield r['text'].decode('utf-8')


def _tokenize_split(builder, split: str, tok, document: bool) -> np.ndarray:
  dtype = np.uint16 if tok.vocab_size <= 2**16 else np.int32
  parts, batch = [], []

  def flush():
    if isinstance(tok, tokenizers.BpeTokenizer):
      ids = tok.encode_batch(batch, document)
    else:
      ids = [tok.encode(r) if isinstance(tok, tokenizers.WordTokenizer) else tok.encode(r, document)
             for r in batch]
    parts.extend(np.asarray(x, dtype) for x in ids)
    batch.clear()

  try:
    for r in _records(builder, split):
      batch.append(r)
      if len(batch) == 4096:
        flush()
    flush()
  except DataError as e:
    raise DataError(f'{builder.name} split {split!r}: {e}') from None
  return np.concatenate(parts) if parts else np.zeros(0, dtype)


def token_streams(c: ml_collections.ConfigDict):
  """(tokenizer, {split: memory-mapped token array}), preparing and tokenizing once.

  With several processes, process 0 prepares first and the others follow after a barrier:
  on a shared disk they find the data ready; on local disks each prepares its own copy.
  """
  if jax.process_count() == 1:
    return _token_streams(c)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    out = _token_streams(c)
  multihost_utils.sync_global_devices('hyena_jax: text data prepared')
  if jax.process_index() != 0:
    out = _token_streams(c)
  return out


def _token_streams(c: ml_collections.ConfigDict):
  d = c.data
  builder = text_builders.prepare(d.name, data_dir(c), source_dir=d.source_dir or None,
                                  files=dict(d.files) if d.name == 'text_files' else None)
  key = d.tokenizer
  if d.tokenizer == 'bpe':
    key += '-' + tokenizers.BpeTokenizer(d.tokenizer_path).signature()['sha']
  cache = os.path.join(os.fspath(builder.data_dir), 'hyena_jax_tokens', key)
  os.makedirs(cache, exist_ok=True)
  tok = _load_tokenizer(c, builder, cache)
  document = builder.UNIT == 'document'
  streams = {}
  for split in text_builders.SPLITS:
    path = os.path.join(cache, f'{split}.npy')
    if not os.path.exists(path):
      arr = _tokenize_split(builder, split, tok, document)
      with open(path + '.tmp', 'wb') as f:
        np.save(f, arr)
      os.replace(path + '.tmp', path)
    streams[split] = np.load(path, mmap_mode='r')
    if len(streams[split]) < 2:
      raise DataError(f'{d.name}: split {split!r} is empty ({len(streams[split])} tokens)')
  return tok, streams


class _Windows(grain.transforms.Map):
  """Global batch of window ids -> this host's rows of (seq_len + 1)-token windows."""

  def __init__(self, stream, seq_len: int, rows: slice):
    self.stream, self.L, self.rows = stream, seq_len, rows

  def map(self, ids):
    pos = ids[self.rows, None] * self.L + np.arange(self.L + 1)[None, :]
    return np.asarray(self.stream[pos], np.int32)


def train_windows(stream, seq_len: int, global_batch: int, seed: int, process_index: int = 0,
                  process_count: int = 1) -> grain.MapDataset:
  """Batches (this host's rows of the global batch) of (seq_len + 1)-token windows, forever."""
  if global_batch % process_count:
    raise DataError(f'train.global_batch_size={global_batch} is not divisible by the '
                    f'{process_count} processes')
  per_host = global_batch // process_count
  rows = slice(process_index * per_host, (process_index + 1) * per_host)
  n_windows = (len(stream) - 1) // seq_len
  return (grain.MapDataset.range(n_windows).shuffle(seed=seed).repeat(None)
          .batch(global_batch, drop_remainder=True).map(_Windows(stream, seq_len, rows)))


class TextDataset:
  """A `data.name` text corpus; see the module docstring."""

  reports_perplexity = True
  validate = staticmethod(validate)

  def __init__(self, c: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.c, self.L, self.G = c, c.data.seq_len, c.train.global_batch_size
    self.tokenizer, self.streams = token_streams(c)
    self.signature = {'dataset': c.data.name, **self.tokenizer.signature()}
    frac = c.data.get('meta_val_fraction', 0.0)
    if frac > 0:
      # The tail of train, so meta-val text is contiguous and never in a training window.
      train = self.streams['train']
      n = int(len(train) * frac)
      if n < self.L + 1:
        raise DataError(f'data.meta_val_fraction={frac} leaves {n} tokens of {c.data.name} train '
                        f'for meta-validation, fewer than one window of seq_len+1={self.L + 1}')
      self.streams = dict(self.streams, train=train[:len(train) - n],
                          meta_val=train[len(train) - n:])
    V = self.tokenizer.vocab_size
    exact = c.data.tokenizer in ('word', 'byte')
    if (c.model.vocab_size != V) if exact else (c.model.vocab_size < V):
      raise DataError(f'model.vocab_size={c.model.vocab_size} does not fit the {c.data.tokenizer} '
                      f'vocabulary of {c.data.name} ({V} types): set --config.model.vocab_size={V}')
    n_windows = (len(self.streams['train']) - 1) // self.L
    if n_windows < self.G:
      raise DataError(f'{c.data.name} train split has {n_windows} windows of seq_len={self.L}, '
                      f'fewer than train.global_batch_size={self.G}')
    self.sharding = NamedSharding(mesh, P('data'))
    ds = train_windows(self.streams['train'], self.L, self.G, c.seed, jax.process_index(),
                       jax.process_count())
    self._it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)))
    self._next_step = 0

  def train_batch(self, step: int):
    if step != self._next_step:
      raise RuntimeError(f'data iterator is at step {self._next_step}, the trainer asked for {step}')
    w = next(self._it)
    self._next_step += 1
    local = {'inputs': w[:, :-1], 'targets': w[:, 1:],
             'acc_mask': np.ones((w.shape[0], self.L), np.float32)}
    return {k: jax.make_array_from_process_local_data(self.sharding, v, (self.G, self.L))
            for k, v in local.items()}

  def meta_val_batch(self, step: int, size: int):
    """Meta-validation windows drawn by (seed, step): stateless, so resume is exact."""
    stream = self.streams['meta_val']
    n_windows = (len(stream) - 1) // self.L
    ids = np.random.default_rng([self.c.seed, step, 0x4D4554]).integers(0, n_windows, size)
    w = np.asarray(stream[ids[:, None] * self.L + np.arange(self.L + 1)[None, :]], np.int32)
    return self.global_batch({'inputs': w[:, :-1], 'targets': w[:, 1:],
                              'acc_mask': np.ones((size, self.L), np.float32)})

  def global_batch(self, b: dict[str, np.ndarray]):
    """A host-identical global numpy batch placed on the mesh (each host sends its shards)."""
    return {k: jax.make_array_from_callback(v.shape, self.sharding, lambda i, v=v: v[i])
            for k, v in b.items()}

  def eval_batches(self, split: str | None = None):
    """`nonoverlap` windows of the eval split (train-time eval; capped by eval_max_tokens)."""
    stream = self.streams[split or self.c.data.eval_split]
    if self.c.data.eval_max_tokens:
      stream = stream[:self.c.data.eval_max_tokens + 1]
    for b in perplexity.window_batches(stream, self.L, self.L, self.G):
      yield self.global_batch(b)

  def state(self) -> dict:
    return {'iterator': self._it.get_state(), 'step': self._next_step,
            'signature': self.signature}

  def restore(self, state: dict) -> None:
    saved = state.get('signature')
    if saved is not None and saved != self.signature:
      diff = sorted(k for k in set(saved) | set(self.signature) if saved.get(k) != self.signature.get(k))
      raise DataError(f'the checkpoint was trained on {json.dumps(saved, sort_keys=True)} but the '
                      f'data now is {json.dumps(self.signature, sort_keys=True)} ({diff[0]} differs)')
    self._it.set_state(state['iterator'])
    self._next_step = int(state['step'])
