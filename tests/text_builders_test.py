"""hyena_jax.data.text_builders (tfds array_record corpora) and text.token_streams."""

import os
import zlib

import numpy as np
import pytest

import helpers
from hyena_jax import config_lib
from hyena_jax.data import text, text_builders
from hyena_jax.data.tokenizers import DataError

SPLIT_LINES = {
    'train': ['the cat sat', '', 'naïve café 東京', 'the end', ''],
    'valid': ['', 'cat 東京', 'sat'],
    'test': ['the', '', '', 'sat'],
}


def write_lines(path, lines):
  path.write_text(''.join(l + '\n' for l in lines), encoding='utf-8')
  return os.fspath(path)


def write_splits(directory, name_fn, split_lines=None):
  directory.mkdir(parents=True, exist_ok=True)
  return {s: write_lines(directory / name_fn(s), ls)
          for s, ls in (split_lines or SPLIT_LINES).items()}


def records(builder, split):
  src = builder.as_data_source(split=split)
  return [src[i]['text'].decode('utf-8') for i in range(len(src))]


def assert_one_line(e: pytest.ExceptionInfo, *fragments):
  msg = str(e.value)
  assert msg and '\n' not in msg, repr(msg)
  for f in fragments:
    assert f in msg, (f, msg)


def test_text_files_records_are_the_lines_in_order(tmp_path):
  files = write_splits(tmp_path / 'src', lambda s: f'{s}.txt')
  builder = text_builders.prepare('text_files', os.fspath(tmp_path / 'tfds'), files=files)
  for s, lines in SPLIT_LINES.items():
    assert records(builder, s) == lines, s


def test_second_prepare_reuses_the_prepared_data(tmp_path):
  files = write_splits(tmp_path / 'src', lambda s: f'{s}.txt')
  data_dir = os.fspath(tmp_path / 'tfds')
  first = text_builders.prepare('text_files', data_dir, files=files)
  before = helpers.tree_digest(first.data_dir)
  second = text_builders.prepare('text_files', data_dir, files=files)
  assert second.is_prepared() and second.data_dir == first.data_dir
  assert helpers.tree_digest(second.data_dir) == before


def test_editing_a_text_file_prepares_it_afresh(tmp_path):
  # The config name hashes size and mtime: stale records must never be served.
  files = write_splits(tmp_path / 'src', lambda s: f'{s}.txt')
  data_dir = os.fspath(tmp_path / 'tfds')
  first = text_builders.prepare('text_files', data_dir, files=files)
  write_lines(tmp_path / 'src' / 'train.txt', ['brand new', 'lines here'])
  second = text_builders.prepare('text_files', data_dir, files=files)
  assert second.data_dir != first.data_dir
  assert records(second, 'train') == ['brand new', 'lines here']


def test_ptb_reads_an_offline_source_dir(tmp_path):
  src = tmp_path / 'ptb'
  write_splits(src, lambda s: f'ptb.{s}.txt')
  builder = text_builders.prepare('ptb', os.fspath(tmp_path / 'tfds'), source_dir=os.fspath(src))
  for s, lines in SPLIT_LINES.items():
    assert records(builder, s) == lines, s


def test_ptb_missing_split_file_is_a_one_line_data_error(tmp_path):
  src = tmp_path / 'ptb'
  write_splits(src, lambda s: f'ptb.{s}.txt')
  os.remove(src / 'ptb.valid.txt')
  with pytest.raises(DataError) as e:
    text_builders.prepare('ptb', os.fspath(tmp_path / 'tfds'), source_dir=os.fspath(src))
  assert_one_line(e, 'ptb.valid.txt', "'valid'")


@pytest.mark.parametrize('name_fn', [lambda s: f'wiki.{s}.tokens', lambda s: f'{s}.txt'],
                         ids=['wiki_tokens', 'pytorch_examples'])
def test_wikitext2_accepts_both_file_namings(tmp_path, name_fn):
  src = tmp_path / 'wt2'
  write_splits(src, name_fn)
  builder = text_builders.prepare('wikitext2', os.fspath(tmp_path / 'tfds'),
                                  source_dir=os.fspath(src))
  for s, lines in SPLIT_LINES.items():
    assert records(builder, s) == lines, s


def test_non_utf8_byte_is_a_one_line_error_naming_file_and_line(tmp_path):
  src = tmp_path / 'ptb'
  write_splits(src, lambda s: f'ptb.{s}.txt')
  (src / 'ptb.test.txt').write_bytes(b'ok\n\xff\xfe bad\n')
  with pytest.raises(DataError) as e:
    text_builders.prepare('ptb', os.fspath(tmp_path / 'tfds'), source_dir=os.fspath(src))
  assert_one_line(e, 'ptb.test.txt:2')


def owt_name(residue: int) -> str:
  """A document file name that the CRC32 rule sends to valid (0) or test (1)."""
  i = 0
  while zlib.crc32(f'doc{i}.txt'.encode()) % 2000 != residue:
    i += 1
  return f'doc{i}.txt'


def test_openwebtext_puts_each_whole_document_in_exactly_one_split(tmp_path):
  root = tmp_path / 'owt'
  docs = {
      'a/train1.txt': 'first line\n\nthird line of one doc\n',
      'a/b/train2.txt': 'naïve café\n東京',
      'train3.txt': 'x\n',
      f'a/{owt_name(0)}': 'valid doc\nline two\n',
      owt_name(1): 'test doc\n',
      'notes.md': 'not a .txt file, ignored\n',
  }
  for rel, body in docs.items():
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(body, encoding='utf-8')
  builder = text_builders.prepare('openwebtext', os.fspath(tmp_path / 'tfds'),
                                  source_dir=os.fspath(root))
  got = {s: records(builder, s) for s in text_builders.SPLITS}
  # read_lines drops each line's newline, so a document's final newline goes too.
  expect = sorted(b.rstrip('\n') for r, b in docs.items() if r.endswith('.txt'))
  assert sorted(sum(got.values(), [])) == expect
  assert got['valid'] == ['valid doc\nline two'] and got['test'] == ['test doc']
  assert 'first line\n\nthird line of one doc' in got['train']


# --- token_streams and validation -------------------------------------------------------


def text_files_config(tmp_path, files):
  c = config_lib.base_config()
  c.data.name = 'text_files'
  c.data.tokenizer = 'word'
  c.data.data_dir = os.fspath(tmp_path / 'tfds')
  for s, p in files.items():
    c.data.files[s] = p
  return c


def test_token_streams_are_the_concatenated_line_encodings(tmp_path):
  files = write_splits(tmp_path / 'src', lambda s: f'{s}.txt')
  tok, streams = text.token_streams(text_files_config(tmp_path, files))
  for s, lines in SPLIT_LINES.items():
    expect = np.concatenate([tok.encode(l) for l in lines])
    np.testing.assert_array_equal(np.asarray(streams[s]), expect, err_msg=s)
  # The vocabulary is the training split's: its most frequent type is <eos>.
  assert tok.words[0] == '<eos>' and 'the' in tok.index


@pytest.mark.parametrize('test_lines', [[], ['']], ids=['no_lines', 'one_blank_line'])
def test_an_empty_split_is_a_one_line_data_error(tmp_path, test_lines):
  files = write_splits(tmp_path / 'src', lambda s: f'{s}.txt',
                       {**SPLIT_LINES, 'test': test_lines})
  with pytest.raises(DataError) as e:
    text.token_streams(text_files_config(tmp_path, files))
  assert_one_line(e, 'empty', "'test'")


def test_validate_names_a_missing_text_file(tmp_path):
  files = write_splits(tmp_path / 'src', lambda s: f'{s}.txt')
  files['valid'] = os.fspath(tmp_path / 'src' / 'missing.txt')
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(text_files_config(tmp_path, files))
  assert_one_line(e, 'data.files.valid', 'missing.txt')


def test_validate_accepts_complete_text_files_and_refuses_bpe_without_a_path(tmp_path):
  c = text_files_config(tmp_path, write_splits(tmp_path / 'src', lambda s: f'{s}.txt'))
  config_lib.validate(c)  # The control: the same config with word tokens is fine.
  c.data.tokenizer = 'bpe'
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert_one_line(e, 'data.tokenizer_path')
