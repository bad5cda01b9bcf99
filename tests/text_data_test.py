"""The text input pipeline end to end: packing, per-host splits, exact resume through the CLI,
2 processes == 1, hyena_jax.evaluate, and one-line errors for bad data."""

import json
import shutil

import numpy as np
import pytest

import helpers
from hyena_jax import config_lib, sharding
from hyena_jax.data import text
from hyena_jax.data.tokenizers import DataError

WORDS = [f'w{i}' for i in range(20)]
VOCAB = len(WORDS) + 1  # + <eos>
NUM_STEPS = 40


def _write_corpus(d, n_train=300, seed=0):
  rng = np.random.default_rng(seed)
  d.mkdir(parents=True, exist_ok=True)
  for split, n in (('train', n_train), ('valid', 30), ('test', 30)):
    lines = [' '.join(rng.choice(WORDS, rng.integers(0, 12))) for _ in range(n)]
    if split == 'train':
      lines[0] = ' '.join(WORDS)  # Every word is in the training vocabulary.
    (d / f'{split}.txt').write_text('\n'.join(lines) + '\n')
  return {s: str(d / f'{s}.txt') for s in ('train', 'valid', 'test')}


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp('corpus')
  return root, _write_corpus(root / 'files')


def _overrides(root, files, **extra):
  args = [*helpers.TINY, '--config.data.name=text_files', f'--config.data.data_dir={root}/tfds',
          f'--config.model.vocab_size={VOCAB}', f'--config.train.num_steps={NUM_STEPS}',
          '--config.train.checkpoint_every_steps=10', '--config.train.keep_checkpoints=10',
          '--config.train.eval_every_steps=20', '--config.eval.l2t_window=8']
  args += [f'--config.data.files.{s}={p}' for s, p in files.items()]
  return tuple(args) + tuple(f'--config.{k}={v}' for k, v in extra.items())


def _config(root, files, **data):
  c = config_lib.base_config()
  c.data.update(name='text_files', data_dir=f'{root}/tfds', seq_len=16, **data)
  c.data.files.update(files)
  c.model.vocab_size = VOCAB
  c.train.global_batch_size = 8
  return c


def _epoch_windows(stream, L, G, seed, process_count=1):
  n = (len(stream) - 1) // L
  hosts = [text.train_windows(stream, L, G, seed, p, process_count) for p in range(process_count)]
  return n, hosts


def test_an_epoch_predicts_every_packed_token_exactly_once():
  stream = np.arange(1 + 16 * 24, dtype=np.int32)  # Token value == its position.
  n, (ds,) = _epoch_windows(stream, 16, 8, seed=0)
  batches = np.concatenate([ds[i] for i in range(n // 8)])
  np.testing.assert_array_equal(batches[:, 1:], batches[:, :-1] + 1)  # Contiguous windows.
  np.testing.assert_array_equal(np.sort(batches[:, 1:].ravel()), np.arange(1, 1 + 16 * 24))
  again = np.concatenate([ds[i] for i in range(n // 8, 2 * n // 8)])
  assert not np.array_equal(again[:, 0], batches[:, 0])  # A new order each epoch.
  np.testing.assert_array_equal(np.sort(again[:, 0]), np.sort(batches[:, 0]))


def test_seed_changes_the_order_not_the_content():
  stream = np.arange(1 + 16 * 24, dtype=np.int32)
  (_, (a,)), (_, (b,)) = _epoch_windows(stream, 16, 8, 0), _epoch_windows(stream, 16, 8, 1)
  assert not np.array_equal(a[0], b[0])
  ea, eb = np.concatenate([a[i] for i in range(3)]), np.concatenate([b[i] for i in range(3)])
  np.testing.assert_array_equal(np.sort(ea[:, 0]), np.sort(eb[:, 0]))


@pytest.mark.parametrize('process_count', [2, 4])
def test_per_host_rows_are_disjoint_and_cover_the_global_batch(process_count):
  stream = np.arange(1 + 16 * 40, dtype=np.int32)
  _, (single,) = _epoch_windows(stream, 16, 8, seed=3)
  _, hosts = _epoch_windows(stream, 16, 8, seed=3, process_count=process_count)
  for step in range(7):
    parts = [h[step] for h in hosts]
    assert all(p.shape == (8 // process_count, 17) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), single[step])


def test_dataset_iterator_state_resumes_the_exact_batches(corpus):
  root, files = corpus
  c = _config(root, files)
  mesh = sharding.make_mesh()
  ref = text.TextDataset(c, mesh)
  want = [np.asarray(ref.train_batch(s)['inputs']) for s in range(30)]  # > 1 epoch (21 steps).
  first = text.TextDataset(c, mesh)
  for s in range(11):
    first.train_batch(s)
  state = json.loads(json.dumps(first.state()))  # What the checkpoint stores.
  resumed = text.TextDataset(c, mesh)
  resumed.restore(state)
  for s in range(11, 30):
    np.testing.assert_array_equal(np.asarray(resumed.train_batch(s)['inputs']), want[s])


def test_restore_refuses_another_vocabulary(corpus):
  root, files = corpus
  ds = text.TextDataset(_config(root, files), sharding.make_mesh())
  state = ds.state()
  state['signature'] = dict(state['signature'], sha='0123456789abcdef')
  with pytest.raises(DataError, match='checkpoint was trained on') as e:
    ds.restore(state)
  assert '\n' not in str(e.value)


def test_model_vocab_must_match_the_word_vocabulary(corpus):
  root, files = corpus
  c = _config(root, files)
  c.model.vocab_size = VOCAB + 3
  with pytest.raises(DataError, match=f'--config.model.vocab_size={VOCAB}'):
    text.TextDataset(c, sharding.make_mesh())


def _text_run(corpus):
  root, files = corpus
  return helpers.cached_run(*_overrides(root, files))


def test_resume_from_a_mid_run_checkpoint_replays_the_same_batches(corpus, tmp_path):
  ref_dir, _ = _text_run(corpus)
  work = tmp_path / 'wd'
  shutil.copytree(ref_dir, work)
  # As if killed right after the step-20 save: later checkpoints never happened.
  for s in helpers.checkpoint_steps(work):
    if s > 20:
      shutil.rmtree(work / 'checkpoints' / str(s))
  (work / 'final_report.json').unlink()
  data_state = json.loads(next((work / 'checkpoints' / '20' / 'data').glob('*')).read_text())
  assert data_state['iterator'] != {'next_index': 0} and data_state['step'] == 20
  res = helpers.run_cli(work, *_overrides(*corpus))
  assert res.returncode == 0, res.stderr[-3000:]
  assert 'Resumed from' in res.stdout and 'at step 20.' in res.stdout
  ref, got = helpers.losses(ref_dir), helpers.losses(work)
  assert sorted(got) == sorted(ref) == list(range(1, NUM_STEPS + 1))
  np.testing.assert_allclose([got[s] for s in range(21, NUM_STEPS + 1)],
                             [ref[s] for s in range(21, NUM_STEPS + 1)], rtol=0, atol=1e-6)
  ev = helpers.losses(ref_dir, 'eval', 'perplexity')
  assert sorted(ev) == [20, 40] and ev[40] < VOCAB  # Learned something beyond uniform.


def test_evaluate_cli_scores_every_token_once_and_writes_json(corpus):
  ref_dir, _ = _text_run(corpus)
  root, files = corpus
  res = helpers.subprocess.run(
      [helpers.sys.executable, '-m', 'hyena_jax.evaluate', '--config=configs/default.py',
       f'--workdir={ref_dir}', *_overrides(root, files),
       '--config.eval.modes=nonoverlap,sliding,l2t', '--config.eval.stride=4'],
      cwd=helpers.REPO, env=helpers.cli_env(), capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  report = json.loads((ref_dir / 'eval' / f'step_{NUM_STEPS}.json').read_text())
  c = _config(root, files)
  _, streams = text.token_streams(c)
  for split in ('valid', 'test'):
    r, n = report['results'][split], len(streams[split])
    assert r['nonoverlap']['tokens'] == r['sliding']['tokens'] == n - 1
    assert r['l2t']['tokens'] == (n - 8) * 8
    assert 1.0 < r['sliding']['perplexity'] < VOCAB
  assert 'not comparable' in report['l2t_note']


def _error(res):
  lines = helpers.error_lines(res.stderr)
  assert res.returncode == 2 and len(lines) == 1, res.stdout[-2000:] + res.stderr[-3000:]
  return lines[0]


def test_bad_data_is_one_line_error_before_training(tmp_path):
  files = _write_corpus(tmp_path / 'ok', n_train=40)
  base = dict(files)
  cases = {
      'missing': (dict(base, valid=str(tmp_path / 'nope.txt')), 'data.files.valid'),
      'empty': (dict(base, test=str(tmp_path / 'empty.txt')), 'empty'),
      'utf8': (dict(base, train=str(tmp_path / 'bad.txt')), 'bad.txt:2: not UTF-8'),
  }
  (tmp_path / 'empty.txt').write_text('')
  (tmp_path / 'bad.txt').write_bytes(b'w1 w2\nw3 \xff\xfe w4\n')
  for name, (f, expect) in cases.items():
    res = helpers.run_cli(tmp_path / name, *_overrides(tmp_path, f))
    assert expect in _error(res), name
    assert not (tmp_path / name / 'checkpoints').exists() or not helpers.checkpoint_steps(
        tmp_path / name)
  res = helpers.run_cli(tmp_path / 'long', *_overrides(tmp_path, base),
                        '--config.data.seq_len=32', '--config.model.l_max=16')
  assert 'exceeds model.l_max=16' in _error(res)


def test_resuming_on_a_different_vocabulary_is_refused_and_keeps_the_checkpoint(tmp_path):
  files = _write_corpus(tmp_path / 'c', n_train=60)
  args = _overrides(tmp_path, files, **{'train.num_steps': 10})
  assert helpers.run_cli(tmp_path / 'wd', *args).returncode == 0
  before = helpers.tree_digest(tmp_path / 'wd' / 'checkpoints')
  for split in ('train', 'valid', 'test'):  # Same vocabulary size, another word.
    f = tmp_path / 'c' / f'{split}.txt'
    f.write_text(f.read_text().replace('w19', 'x19'))
  res = helpers.run_cli(tmp_path / 'wd', *_overrides(tmp_path, files,
                                                    **{'train.num_steps': 20}))
  assert 'checkpoint was trained on' in _error(res)
  assert helpers.tree_digest(tmp_path / 'wd' / 'checkpoints') == before


def test_two_processes_read_disjoint_rows_and_match_one_process(corpus, tmp_path):
  root, files = corpus
  args = _overrides(root, files, **{'train.num_steps': 6, 'train.eval_every_steps': 3,
                                    'train.checkpoint_every_steps': 3})
  port = helpers.free_port()
  procs = [helpers.CliProcess(tmp_path / 'multi', *args, log_dir=tmp_path, name=f'p{i}',
                              flags=(f'--coordinator_address=localhost:{port}',
                                     '--num_processes=2', f'--process_id={i}'))
           for i in range(2)]
  single = helpers.CliProcess(tmp_path / 'single', *args, log_dir=tmp_path, name='single',
                              devices=2)
  with helpers.killing_on_exit(*procs, single):
    assert helpers.wait_all(*procs, single) == [0, 0, 0], '\n'.join(
        p.describe() for p in (*procs, single))
  for key in ('loss', 'grad_norm'):
    a, b = helpers.losses(tmp_path / 'multi', key=key), helpers.losses(tmp_path / 'single', key=key)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    np.testing.assert_allclose([a[s] for s in a], [b[s] for s in a], rtol=0, atol=1e-5)


def test_lm_eval_cli_scores_a_local_offline_task_on_a_trained_workdir(corpus, tmp_path):
  """The adapter's workdir path end to end: restore, tokenizer, rolling loglikelihood."""
  pytest.importorskip('lm_eval')
  ref_dir, _ = _text_run(corpus)
  root, files = corpus
  words = open(files['valid']).read().split()[:40]
  docs = tmp_path / 'ppl.jsonl'
  docs.write_text('\n'.join(json.dumps({'text': ' '.join(words[i:i + 10])}) for i in (0, 10, 20)))
  (tmp_path / 'local_ppl.yaml').write_text(
      'task: local_ppl\ndataset_path: json\ndataset_kwargs:\n  data_files:\n'
      f'    test: {docs}\ntest_split: test\noutput_type: loglikelihood_rolling\n'
      'doc_to_text: ""\ndoc_to_target: "{{text}}"\nmetric_list:\n  - metric: word_perplexity\n')
  out = tmp_path / 'out.json'
  res = helpers.subprocess.run(
      [helpers.sys.executable, '-m', 'hyena_jax.eval.lm_eval_adapter', '--config=configs/default.py',
       f'--workdir={ref_dir}', '--tasks=local_ppl', f'--include_path={tmp_path}',
       f'--output={out}', *_overrides(root, files)],
      cwd=helpers.REPO, env=helpers.cli_env(extra={'HF_DATASETS_OFFLINE': '1',
                                                   'HF_HOME': str(tmp_path / 'hf')}),
      capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  assert 'word_perplexity' in res.stdout


def test_sample_cli_decodes_text_prompts_from_a_trained_workdir(corpus):
  ref_dir, _ = _text_run(corpus)
  root, files = corpus
  words = open(files['valid']).read().split()

  def sample(*flags):
    res = helpers.subprocess.run(
        [helpers.sys.executable, '-m', 'hyena_jax.sample', '--config=configs/default.py',
         f'--workdir={ref_dir}', f'--prompt={" ".join(words[:3])}', f'--prompt={words[5]}',
         '--max_new_tokens=6', '--json', *flags, *_overrides(root, files)],
        cwd=helpers.REPO, env=helpers.cli_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return [json.loads(l) for l in res.stdout.splitlines() if l.startswith('{')]

  greedy = sample('--temperature=0')
  assert [r['prompt'] for r in greedy] == [0, 1] and greedy[0]['step'] == NUM_STEPS
  assert all(len(r['ids']) <= 6 and isinstance(r['text'], str) for r in greedy)
  assert [r['ids'] for r in sample('--temperature=0', '--method=recompute')] == [
      r['ids'] for r in greedy]
  res = helpers.subprocess.run(
      [helpers.sys.executable, '-m', 'hyena_jax.sample', '--config=configs/default.py',
       f'--workdir={ref_dir}', '--prompt_ids=1,2', '--prompt=x', *_overrides(root, files)],
      cwd=helpers.REPO, env=helpers.cli_env(), capture_output=True, text=True, timeout=600)
  assert res.returncode != 0 and '--prompt_ids' in res.stderr
