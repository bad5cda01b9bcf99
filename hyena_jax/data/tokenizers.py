"""Tokenizers for the text pipeline: word-level, byte-level BPE (HF `tokenizers` JSON), bytes.

Each turns one corpus record (a line, or a whole document) into ids and knows how many UTF-8
bytes each id stands for, so that evaluation can report bits per byte.
"""

import collections
import functools
import hashlib
import json
import os
from typing import Iterable, Sequence

import numpy as np

from hyena_jax import config_lib

EOS_WORD = '<eos>'


class DataError(config_lib.ConfigError):
  """Unusable data (missing file, empty split, bad bytes, vocabulary mismatch): one line."""


def _sha(text: str) -> str:
  return hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]


class WordTokenizer:
  """Whitespace words + `<eos>` per line (Mikolov PTB / WikiText convention).

  Ids follow descending training frequency, ties broken by first appearance, so the
  vocabulary is a pure function of the training split.
  """

  kind = 'word'

  def __init__(self, words: Sequence[str]):
    self.words = list(words)
    self.index = {w: i for i, w in enumerate(self.words)}
    self.unk = self.index.get('<unk>')
    self.vocab_size = len(self.words)
    self.eos_id = self.index[EOS_WORD]

  @classmethod
  def build(cls, train_records: Iterable[str]) -> 'WordTokenizer':
    counts = collections.Counter()
    for rec in train_records:
      for line in rec.split('\n'):
        counts.update(line.split())
        counts[EOS_WORD] += 1
    return cls(sorted(counts, key=lambda w: -counts[w]))  # sorted() is stable: first-seen order.

  def encode(self, record: str) -> list[int]:
    ids = []
    for line in record.split('\n'):
      for w in line.split():
        i = self.index.get(w, self.unk)
        if i is None:
          raise DataError(f'word {w!r} is not in the training vocabulary and it has no <unk>')
        ids.append(i)
      ids.append(self.eos_id)
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    return ' '.join('\n' if i == self.eos_id else self.words[i] for i in ids)

  def token_bytes(self) -> np.ndarray:
    # A word stands for its bytes plus one separator (space or newline).
    return np.array([len(w.encode('utf-8')) + 1 for w in self.words], np.int64)

  def signature(self) -> dict:
    return {'kind': self.kind, 'vocab_size': self.vocab_size, 'sha': _sha('\n'.join(self.words))}

  def save(self, path: str) -> None:
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      f.write('\n'.join(self.words) + '\n')
    os.replace(path + '.tmp', path)

  @classmethod
  def load(cls, path: str) -> 'WordTokenizer':
    with open(path, encoding='utf-8') as f:
      return cls(f.read().split('\n')[:-1])


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
  """GPT-2's printable-unicode alias of each byte, inverted (byte-level BPE vocab strings)."""
  keep = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
  aliases, n = {}, 0
  for b in range(256):
    if b in keep:
      aliases[chr(b)] = b
    else:
      aliases[chr(256 + n)] = b
      n += 1
  return aliases


class BpeTokenizer:
  """Any Hugging Face `tokenizers` JSON (GPT-2, GPT-NeoX-20B, ...); loaded from a path.

  A line record is encoded with its newline; a document record gets the eos token (if the
  tokenizer has one, e.g. <|endoftext|>) as separator.
  """

  kind = 'bpe'

  def __init__(self, path: str):
    try:
      import tokenizers  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise DataError('data.tokenizer=bpe needs the `tokenizers` package (pip install '
                      'tokenizers)') from e
    if not os.path.isfile(path):
      raise DataError(f'data.tokenizer_path={path!r}: no such tokenizer JSON file')
    try:
      self.tok = tokenizers.Tokenizer.from_file(path)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'data.tokenizer_path={path!r} is not a tokenizers JSON: {e}') from e
    with open(path, 'rb') as f:
      self._sha = hashlib.sha256(f.read()).hexdigest()[:16]
    self.path = path
    self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
    self.special = {t.content for t in self.tok.get_added_tokens_decoder().values() if t.special}
    self.eos_id = None
    for name in ('<|endoftext|>', '</s>', '<eos>'):
      if self.tok.token_to_id(name) is not None:
        self.eos_id = self.tok.token_to_id(name)
        break

  def encode(self, record: str, document: bool = False) -> list[int]:
    if document:
      ids = self.tok.encode(record, add_special_tokens=False).ids
      return ids + ([self.eos_id] if self.eos_id is not None else [])
    return self.tok.encode(record + '\n', add_special_tokens=False).ids

  def encode_batch(self, records: Sequence[str], document: bool = False) -> list[list[int]]:
    if document:
      return [self.encode(r, True) for r in records]
    out = self.tok.encode_batch([r + '\n' for r in records], add_special_tokens=False)
    return [e.ids for e in out]

  def decode(self, ids: Iterable[int]) -> str:
    return self.tok.decode(list(ids), skip_special_tokens=False)

  def token_bytes(self) -> np.ndarray:
    """UTF-8 bytes per id; special tokens stand for no text bytes."""
    dec = _byte_decoder()
    out = np.zeros(self.vocab_size, np.int64)
    for s, i in self.tok.get_vocab(with_added_tokens=True).items():
      if s in self.special:
        continue
      out[i] = len(s.encode('utf-8')) if any(ch not in dec for ch in s) else len(s)
    return out

  def signature(self) -> dict:
    return {'kind': self.kind, 'vocab_size': self.vocab_size, 'sha': self._sha}


class ByteTokenizer:
  """UTF-8 bytes, ids 0..255; each record ends with a newline byte."""

  kind = 'byte'
  vocab_size = 256

  def encode(self, record: str, document: bool = False) -> list[int]:
    del document
    return list((record + '\n').encode('utf-8'))

  def decode(self, ids: Iterable[int]) -> str:
    return bytes(int(i) for i in ids).decode('utf-8', errors='replace')

  def token_bytes(self) -> np.ndarray:
    return np.ones(256, np.int64)

  def signature(self) -> dict:
    return {'kind': self.kind, 'vocab_size': 256, 'sha': 'utf-8'}


def signature_json(sig: dict) -> str:
  return json.dumps(sig, sort_keys=True)
