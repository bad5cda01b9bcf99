"""hyena_jax.data.tokenizers: word, byte-level BPE and byte tokenizers."""

import os

import numpy as np
import pytest

from hyena_jax.data import tokenizers
from hyena_jax.data.tokenizers import DataError

GPT2_JSON = '/work/shared/data/tokenizers/gpt2_tokenizer.json'
LINES = ['the cat sat', '', 'naïve café 東京', '  spaced   out  ', 'emoji 🙂 ok', 'the end.']


def assert_one_line(e: pytest.ExceptionInfo):
  msg = str(e.value)
  assert msg and '\n' not in msg, repr(msg)


# --- word -------------------------------------------------------------------------------


def test_word_build_counts_one_eos_per_line_including_empty_lines():
  tok = tokenizers.WordTokenizer.build(['a b', '', 'b\nc'])
  # 4 lines (the third record holds two), so <eos> is the most frequent type.
  ids = tok.encode('a b') + tok.encode('') + tok.encode('b\nc')
  assert ids.count(tok.eos_id) == 4
  assert tok.words[0] == tokenizers.EOS_WORD


def test_word_ids_follow_frequency_then_first_appearance():
  tok = tokenizers.WordTokenizer.build(['b a b', 'zé a', 'ü zé x'])
  # Counts: b 2, a 2, <eos> 3, zé 2, ü 1, x 1; ties keep first-seen order.
  assert tok.words == ['<eos>', 'b', 'a', 'zé', 'ü', 'x']


def test_word_round_trip_recovers_the_word_sequence():
  tok = tokenizers.WordTokenizer.build(LINES)
  for line in LINES:
    ids = tok.encode(line)
    assert ids[-1] == tok.eos_id
    # decode joins with spaces and writes eos as '\n': compare words, not whitespace.
    assert tok.decode(ids).split() == line.split()
    assert tok.decode(ids).count('\n') == 1


def test_word_oov_maps_to_unk_when_the_vocabulary_has_it():
  tok = tokenizers.WordTokenizer.build(['a <unk> b'])
  assert tok.encode('a zzz') == [tok.index['a'], tok.index['<unk>'], tok.eos_id]


def test_word_oov_without_unk_is_a_one_line_data_error():
  tok = tokenizers.WordTokenizer.build(['a b'])
  with pytest.raises(DataError) as e:
    tok.encode('a zzz')
  assert_one_line(e)
  assert 'zzz' in str(e.value)


def test_word_save_load_keeps_the_signature(tmp_path):
  tok = tokenizers.WordTokenizer.build(LINES)
  path = os.fspath(tmp_path / 'vocab.txt')
  tok.save(path)
  loaded = tokenizers.WordTokenizer.load(path)
  assert loaded.signature() == tok.signature()
  assert loaded.words == tok.words
  assert loaded.encode(LINES[2]) == tok.encode(LINES[2])


def test_word_token_bytes_cover_the_vocabulary():
  tok = tokenizers.WordTokenizer.build(LINES)
  tb = tok.token_bytes()
  assert len(tb) == tok.vocab_size
  assert tb[tok.index['東京']] == len('東京'.encode('utf-8')) + 1


# --- bpe --------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def tiny_bpe_path(tmp_path_factory):
  tk = pytest.importorskip('tokenizers')
  tok = tk.Tokenizer(tk.models.BPE())
  tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tk.decoders.ByteLevel()
  trainer = tk.trainers.BpeTrainer(vocab_size=300, special_tokens=['<|endoftext|>'],
                                   initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
                                   show_progress=False)
  tok.train_from_iterator(LINES * 3 + ['the cat and the hat'], trainer=trainer)
  path = tmp_path_factory.mktemp('bpe') / 'tiny.json'
  tok.save(os.fspath(path))
  return os.fspath(path)


def bpe_paths():
  return ['tiny', pytest.param('gpt2', marks=pytest.mark.skipif(
      not os.path.isfile(GPT2_JSON), reason='no shared GPT-2 tokenizer JSON'))]


@pytest.fixture(params=bpe_paths())
def bpe(request, tiny_bpe_path):
  return tokenizers.BpeTokenizer(tiny_bpe_path if request.param == 'tiny' else GPT2_JSON)


def test_bpe_round_trip_appends_the_newline(bpe):
  for line in LINES:
    assert bpe.decode(bpe.encode(line)) == line + '\n'


def test_bpe_token_bytes_sum_to_the_utf8_length(bpe):
  # Bits per byte divides by exactly this sum.
  tb = bpe.token_bytes()
  assert len(tb) == bpe.vocab_size
  for line in LINES:
    ids = np.asarray(bpe.encode(line))
    assert tb[ids].sum() == len((line + '\n').encode('utf-8')), line


def test_bpe_document_mode_ends_with_eos_worth_zero_bytes(bpe):
  assert bpe.eos_id is not None
  ids = bpe.encode('naïve café\n東京', document=True)
  assert ids[-1] == bpe.eos_id and bpe.eos_id not in ids[:-1]
  assert bpe.decode(ids[:-1]) == 'naïve café\n東京'
  assert bpe.token_bytes()[bpe.eos_id] == 0


def test_bpe_encode_batch_matches_per_record_encode(bpe):
  for document in (False, True):
    assert bpe.encode_batch(LINES, document) == [bpe.encode(r, document) for r in LINES]


def test_bpe_signature_changes_with_the_file(tiny_bpe_path, tmp_path):
  other = tmp_path / 'other.json'
  other.write_text(open(tiny_bpe_path, encoding='utf-8').read().replace('"BPE"', '"BPE" '))
  a, b = tokenizers.BpeTokenizer(tiny_bpe_path), tokenizers.BpeTokenizer(os.fspath(other))
  assert a.signature()['vocab_size'] == b.signature()['vocab_size']
  assert a.signature() != b.signature()


def test_bpe_missing_path_is_a_one_line_data_error(tmp_path):
  with pytest.raises(DataError) as e:
    tokenizers.BpeTokenizer(os.fspath(tmp_path / 'nope.json'))
  assert_one_line(e)
  assert 'nope.json' in str(e.value)


@pytest.mark.parametrize('text', ['this is\nnot json\n', '', '{"a": 1}'])
def test_bpe_non_tokenizer_file_is_a_one_line_data_error(tmp_path, text):
  path = tmp_path / 'bad.json'
  path.write_text(text)
  with pytest.raises(DataError) as e:
    tokenizers.BpeTokenizer(os.fspath(path))
  assert_one_line(e)
  assert 'bad.json' in str(e.value)


# --- bytes ------------------------------------------------------------------------------


def test_byte_round_trip_and_one_byte_per_token():
  tok = tokenizers.ByteTokenizer()
  for line in LINES:
    ids = tok.encode(line)
    assert len(ids) == len((line + '\n').encode('utf-8'))
    assert tok.decode(ids) == line + '\n'
  tb = tok.token_bytes()
  assert tb.shape == (256,) and (tb == 1).all()
