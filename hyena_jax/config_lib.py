"""The base ConfigDict every config in configs/ starts from, and its validation.

Validation runs before any compilation: a bad config costs one line, not a traceback
after minutes of tracing.
"""

import importlib.util
import os

import ml_collections


class ConfigError(ValueError):
  """A config that cannot run. The message is one line naming the field."""


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                       # Seeds init, dropout and the synthetic data stream.

  c.data = ml_collections.ConfigDict()
  c.data.name = 'recall'           # Dataset registry key (hyena_jax.data.DATASETS).
  c.data.seq_len = 64              # Tokens per training sequence (model input length).
  c.data.vocab_size = 30           # Recall: number of key + value tokens (the paper's "vocab").
  c.data.num_eval = 1024           # Held-out examples (fixed set, never trained on).
  c.data.eval_seed = 1234          # Seed of the held-out set (independent of c.seed).
  # Text corpora (data.name in ptb | wikitext2 | wikitext103 | openwebtext | text_files):
  c.data.tokenizer = 'word'        # word | bpe | byte
  c.data.tokenizer_path = ''       # bpe: a Hugging Face tokenizers JSON file.
  c.data.source_dir = ''           # Raw corpus files (offline); empty: download from its URL.
  c.data.data_dir = ''             # tfds data_dir; empty: $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.data.files = ml_collections.ConfigDict({'train': '', 'valid': '', 'test': ''})  # text_files
  c.data.eval_split = 'valid'      # Split of the periodic train-time eval.
  c.data.eval_max_tokens = 0       # Cap on the train-time eval (0: the whole split).
  # Tail of the training stream held out as the L2T meta-validation split (never trained on,
  # never the reported valid/test). Set it for every arm of a comparison, not only meta.
  c.data.meta_val_fraction = 0.0
  # data.name=mqar (zoology's multi-query recall): n key-value pairs, each key queried once
  # at a power-law gap p(g) ∝ g^(power_a-1); filler tokens random (True) or 0. Trains on
  # the queries only. Needs model.vocab_size >= data.vocab_size (no marker token).
  c.data.mqar = ml_collections.ConfigDict(
      {'num_kv_pairs': 8, 'power_a': 0.01, 'random_non_queries': True})

  m = c.model = ml_collections.ConfigDict()
  m.mixer = 'hyena'                # Sequence mixer: one of hyena_jax.models.MIXERS.
  m.vocab_size = c.data.get_ref('vocab_size') + 1  # Recall adds one query-marker token.
  m.pad_vocab_to = 8               # Embedding rows padded to a multiple of this (safari).
  m.d_model = 64
  m.n_layer = 2
  m.d_inner = 256                  # MLP width; 0: blocks without an MLP (the mixer alone).
  # sequential: x + mixer(LN1 x), then + MLP(LN2 of that); parallel (GPT-NeoX
  # use_parallel_residual): x + mixer(LN1 x) + MLP(LN2 x).
  m.residual = 'sequential'
  m.gelu = 'tanh'                  # MLP GELU: tanh approximation, or exact (erf; NeoX 'gelu').
  m.tie_embeddings = True          # False: a separate output table (NeoX embed_out, no bias).
  # Longest sequence the filters are built for. A derived reference (`* 1`), not the bare
  # one: it follows data.seq_len, yet overriding model.l_max does not rewrite data.seq_len.
  m.l_max = c.data.get_ref('seq_len') * 1
  m.embed_dropout = 0.1
  m.resid_dropout = 0.0
  m.layer_norm_eps = 1e-5
  m.dtype = 'float32'              # Activation/matmul dtype; params and FFTs stay float32.
  h = m.hyena = ml_collections.ConfigDict()
  h.order = 2                      # N: N+1 projections, N-1 long convolutions (safari).
  h.filter_order = 64              # Width F of the filter MLP.
  h.emb_dim = 3                    # Positional features: 1 + 2*bands; odd, >= 3.
  h.num_inner_mlps = 2
  h.w = 1.0                        # Initial frequency of the shared sine activation.
  h.learn_pos_emb = False          # Train z (own lr, no weight decay) or keep it frozen.
  h.modulate = True
  h.fast_decay_pct = 0.3
  h.slow_decay_pct = 1.5
  h.decay_target = 1e-2
  h.decay_shift = 0.0
  h.short_filter_order = 3
  h.dropout = 0.0                  # Dropout on the gated signal before each long conv.
  h.fft_size = ml_collections.config_dict.placeholder(int)  # None: 2L.
  # channels_first (fast: C x B x L, hand-written projection VJPs) or reference (B x L x D,
  # plain autodiff). Same function and parameters; decoding uses its own cached path.
  h.impl = 'channels_first'
  # model.mixer='attention': causal softmax attention with GPT-NeoX rotary embeddings.
  m.attention = ml_collections.ConfigDict()
  m.attention.num_heads = 8
  m.attention.rotary_pct = 0.25    # Fraction of each head's dims rotated (NeoX rotary_pct).
  m.attention.rotary_base = 10000.0
  # xla (the L x L einsum), blockwise (flash-style tiles, O(L) memory), or auto: by length.
  m.attention.impl = 'auto'
  # model.mixer='longhorn' (Liu et al. 2024): blocks without MLP (model.d_inner=0) in the paper.
  m.longhorn = ml_collections.ConfigDict()
  m.longhorn.d_state = 16          # N: state size per channel.
  m.longhorn.expand = 2            # E: inner width E * d_model.
  m.longhorn.d_conv = 4            # Causal depthwise conv width.
  m.longhorn.dt_rank = 0           # R of the low-rank beta projection; 0: ceil(d_model / 16).
  m.longhorn.scan = 'auto'         # auto | sequential | chunked | associative | reference
  m.longhorn.chunk = 64            # Tokens per checkpointed chunk (sequential, chunked).

  o = c.optim = ml_collections.ConfigDict()
  o.lr = 5e-4
  o.warmup_steps = 100
  o.min_lr_ratio = 0.1             # Cosine decays to lr * min_lr_ratio.
  o.weight_decay = 0.1             # Applied to dense/conv kernels only.
  o.b1 = 0.9
  o.b2 = 0.999
  o.eps = 1e-8
  o.eps_root = 0.0                 # > 0 makes Adam differentiable at v = 0 (l2t meta mode).
  o.grad_clip = 1.0                # Global-norm clipping; 0 disables.
  o.filter_lr = ml_collections.config_dict.placeholder(float)   # Filter MLP + omega; None: lr.
  o.filter_weight_decay = 0.0
  o.pos_emb_lr = ml_collections.config_dict.placeholder(float)  # z when learned; None: lr.

  e = c.eval = ml_collections.ConfigDict()  # hyena_jax.evaluate (text perplexity).
  e.splits = 'valid,test'
  e.modes = 'nonoverlap,sliding'   # Of hyena_jax.eval.perplexity.MODES.
  e.stride = ml_collections.config_dict.placeholder(int)  # sliding; None: seq_len // 4.
  e.l2t_window = 64                # l2t: the L2T-Hyena paper's window.
  e.l2t_every = 1                  # l2t: score windows starting every N tokens (1: the paper).
  e.batch_size = ml_collections.config_dict.placeholder(int)  # None: train.global_batch_size.

  l = c.l2t = ml_collections.ConfigDict()  # L2T-Hyena (hyena_jax/l2t/steps.py).
  l.mode = 'off'                   # off | static | paper | meta
  l.lam = 0.1                      # Student loss (1 - w) CE + w lam mean(logits^2).
  l.static_w = 0.25                # static mode's fixed w.
  l.w_min = 0.05
  l.w_max = 0.95
  l.paper_mask_bug = False         # Reproduce the official code's inverted wrong-class mask.
  l.dln = ml_collections.ConfigDict({'hidden': 64, 'mlp_width': 256, 'mlp_layers': 2})
  l.paper = ml_collections.ConfigDict({  # The official code's teacher, memory and optimizers.
      'memory_size': 500, 'teacher_width': 128, 'teacher_out_bias': 15.0,
      'dln_lr': 5e-7, 'dln_weight_decay': 0.01, 'dln_grad_clip': 1.0,
      'teacher_lr': 2e-6, 'teacher_weight_decay': 0.01, 'teacher_grad_clip': 0.1})
  l.meta = ml_collections.ConfigDict({
      'unroll': 1,                 # K differentiable student steps per meta step.
      'every': 10,                 # M: a meta step starts every M student steps (M >= K).
      'teacher': 'adam',           # adam (plain Adam on phi) | lstm (L2T-DLN's LSTM teacher).
      'lr': 1e-3,                  # Adam lr on phi, or the LSTM teacher's step scale.
      'grad_clip': 1.0,            # Global-norm clip of the meta-gradient (adam teacher).
      'lstm_hidden': 16,
      'lstm_lr': 1e-3,             # Adam lr of the LSTM teacher's own parameters.
      'val_batch_size': ml_collections.config_dict.placeholder(int)})  # None: global batch.

  d = c.distill = ml_collections.ConfigDict()  # Scavenging Hyena (hyena_jax/distill/steps.py).
  d.stage = 'off'                  # off | layers (stage 1: per-layer MSE) | e2e (stage 2: CE + KL)
  d.mode = 'cumulative'            # layers: cumulative (bottom-up, the paper) | teacher_forced
  d.teacher_workdir = ''           # A run of this codebase (config.json + checkpoints) ...
  d.teacher_hf = ''                # ... or a Hugging Face GPT-NeoX directory (exactly one).
  d.init_from = ''                 # Student start: a stage-1 workdir; empty: built from the teacher.
  d.attention_init = True          # Hyena in_proj/out_proj from the teacher's qkv/dense.
  d.freeze_copied = True           # layers: only the Hyena mixers train.
  d.steps_per_layer = 0            # cumulative: steps per layer phase; 0: num_steps // n_layer.
  d.kl_weight = 0.0                # e2e: weight of T^2 KL(teacher || student).
  d.temperature = 1.0

  t = c.train = ml_collections.ConfigDict()
  t.global_batch_size = 32         # Summed over all devices; must divide evenly.
  t.num_steps = 1000
  t.eval_every_steps = 200
  t.checkpoint_every_steps = 200
  t.keep_checkpoints = 3
  t.log_every_secs = 5.0           # Progress line period.
  t.metrics_every_steps = 1        # metrics.jsonl granularity (per-step losses for resume checks).
  t.stop_at_eval_accuracy = ml_collections.config_dict.placeholder(float)  # Early stop.
  t.inject_nan_at_step = -1        # Testing aid: poison the loss at this step.
  return c


def shared_data(name: str) -> str:
  """A corpus or tokenizer under $HYENA_JAX_SHARED_DATA (default: the checkout's sibling
  ../shared/data, where this project's CI keeps offline copies); '' when absent."""
  root = os.environ.get('HYENA_JAX_SHARED_DATA') or os.path.join(
      os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data')
  path = os.path.normpath(os.path.join(root, name))
  return path if os.path.exists(path) else ''


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config([arg])` of a configs/*.py file, as --config=PATH[:ARG] would (for Colab)."""
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f'hyena_jax_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)


def _check(ok: bool, msg: str):
  if not ok:
    raise ConfigError(msg)


def validate(c: ml_collections.ConfigDict, device_count: int = 1) -> None:
  """Raise ConfigError naming the first problem found."""
  from hyena_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hyena_jax.models import MIXERS  # pylint: disable=g-import-not-at-top
  from hyena_jax.models import attention as attention_lib  # pylint: disable=g-import-not-at-top
  from hyena_jax.models import hyena as hyena_lib  # pylint: disable=g-import-not-at-top
  from hyena_jax.ops import attention as attention_ops  # pylint: disable=g-import-not-at-top
  from hyena_jax.ops import longhorn as longhorn_ops  # pylint: disable=g-import-not-at-top
  m, h, o, t = c.model, c.model.hyena, c.optim, c.train
  _check(m.mixer in MIXERS, f'model.mixer={m.mixer!r} is unknown; choose from {sorted(MIXERS)}')
  _check(c.data.name in data_lib.DATASETS,
         f'data.name={c.data.name!r} is unknown; choose from {sorted(data_lib.DATASETS)}')
  for name in ('d_model', 'n_layer', 'l_max', 'vocab_size', 'pad_vocab_to'):
    _check(m[name] > 0, f'model.{name}={m[name]} must be positive')
  _check(m.d_inner >= 0, f'model.d_inner={m.d_inner} must be >= 0 (0: blocks without an MLP)')
  _check(m.residual in ('sequential', 'parallel'),
         f'model.residual={m.residual!r} must be sequential or parallel')
  _check(m.gelu in ('tanh', 'exact'), f'model.gelu={m.gelu!r} must be tanh or exact')
  _check(isinstance(m.tie_embeddings, bool),
         f'model.tie_embeddings={m.tie_embeddings!r} must be True or False')
  _check(c.data.seq_len > 0, f'data.seq_len={c.data.seq_len} must be positive')
  _check(c.data.seq_len <= m.l_max,
         f'data.seq_len={c.data.seq_len} exceeds model.l_max={m.l_max}')
  _check(m.dtype in ('float32', 'bfloat16', 'float16'),
         f'model.dtype={m.dtype!r} must be float32, bfloat16 or float16')
  for name in ('embed_dropout', 'resid_dropout'):
    _check(0.0 <= m[name] < 1.0, f'model.{name}={m[name]} must be in [0, 1)')
  if m.mixer == 'hyena':
    _check(h.order >= 2, f'model.hyena.order={h.order} must be >= 2')
    _check(h.emb_dim >= 3 and h.emb_dim % 2 == 1,
           f'model.hyena.emb_dim={h.emb_dim} must be odd and >= 3 (time, cos, sin bands)')
    _check(h.filter_order > 0, f'model.hyena.filter_order={h.filter_order} must be positive')
    _check(h.short_filter_order >= 1,
           f'model.hyena.short_filter_order={h.short_filter_order} must be >= 1')
    _check(0.0 <= h.dropout < 1.0, f'model.hyena.dropout={h.dropout} must be in [0, 1)')
    _check(h.fft_size is None or h.fft_size >= 2 * c.data.seq_len - 1,
           f'model.hyena.fft_size={h.fft_size} must be >= 2*seq_len-1 = {2 * c.data.seq_len - 1}')
    _check(h.impl in hyena_lib.IMPLS,
           f'model.hyena.impl={h.impl!r} is unknown; choose from {list(hyena_lib.IMPLS)}')
  if m.mixer == 'attention':
    a = m.attention
    _check(a.num_heads > 0 and m.d_model % a.num_heads == 0,
           f'model.attention.num_heads={a.num_heads} must be positive and divide '
           f'model.d_model={m.d_model}')
    _check(0.0 <= a.rotary_pct <= 1.0,
           f'model.attention.rotary_pct={a.rotary_pct} must be in [0, 1]')
    r = attention_lib.rotary_dims(m.d_model, a)
    _check(r % 2 == 0, f'model.attention.rotary_pct={a.rotary_pct} gives {r} rotary dims per '
           f'head (head dim {m.d_model // a.num_heads}); it must be even')
    _check(a.rotary_base > 0, f'model.attention.rotary_base={a.rotary_base} must be positive')
    _check(a.impl in attention_ops.IMPLS,
           f'model.attention.impl={a.impl!r} is unknown; choose from {list(attention_ops.IMPLS)}')
  if m.mixer == 'longhorn':
    lc = m.longhorn
    for name in ('d_state', 'expand', 'd_conv', 'chunk'):
      _check(lc[name] >= 1, f'model.longhorn.{name}={lc[name]} must be >= 1')
    _check(lc.dt_rank >= 0, f'model.longhorn.dt_rank={lc.dt_rank} must be >= 0 (0: auto)')
    _check(lc.scan in longhorn_ops.SCANS,
           f'model.longhorn.scan={lc.scan!r} is unknown; choose from {list(longhorn_ops.SCANS)}')
  _check(o.lr > 0, f'optim.lr={o.lr} must be positive')
  for name in ('filter_lr', 'pos_emb_lr'):
    _check(o[name] is None or o[name] > 0, f'optim.{name}={o[name]} must be positive or None')
  _check(o.warmup_steps >= 0, f'optim.warmup_steps={o.warmup_steps} must be >= 0')
  _check(0.0 <= o.min_lr_ratio <= 1.0, f'optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1]')
  _check(o.weight_decay >= 0, f'optim.weight_decay={o.weight_decay} must be >= 0')
  _check(o.grad_clip >= 0, f'optim.grad_clip={o.grad_clip} must be >= 0 (0 disables)')
  _check(t.num_steps > 0, f'train.num_steps={t.num_steps} must be positive')
  _check(t.global_batch_size > 0, f'train.global_batch_size={t.global_batch_size} must be positive')
  _check(t.global_batch_size % device_count == 0,
         f'train.global_batch_size={t.global_batch_size} is not divisible by the '
         f'{device_count} devices')
  for name in ('eval_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
               'metrics_every_steps'):
    _check(t[name] > 0, f'train.{name}={t[name]} must be positive')
  _validate_eval(c, device_count)
  _validate_l2t(c, device_count)
  from hyena_jax.distill import steps as distill_steps  # pylint: disable=g-import-not-at-top
  distill_steps.validate(c)
  data_lib.DATASETS[c.data.name].validate(c, device_count)


def _validate_eval(c: ml_collections.ConfigDict, device_count: int) -> None:
  from hyena_jax.eval import perplexity  # pylint: disable=g-import-not-at-top
  e = c.eval
  for mode in filter(None, e.modes.split(',')):
    _check(mode in perplexity.MODES, f'eval.modes={e.modes!r} has {mode!r}; choose from '
           f'{list(perplexity.MODES)}')
  for split in filter(None, e.splits.split(',')):
    _check(split in ('train', 'valid', 'test'),
           f'eval.splits={e.splits!r} has {split!r}; use train, valid, test')
  _check(e.stride is None or 1 <= e.stride <= c.data.seq_len,
         f'eval.stride={e.stride} must be in [1, data.seq_len={c.data.seq_len}]')
  _check('l2t' not in e.modes or 1 <= e.l2t_window <= c.model.l_max,
         f'eval.l2t_window={e.l2t_window} must be in [1, model.l_max={c.model.l_max}]')
  _check(e.l2t_every >= 1, f'eval.l2t_every={e.l2t_every} must be >= 1')
  _check(e.batch_size is None or (e.batch_size > 0 and e.batch_size % device_count == 0),
         f'eval.batch_size={e.batch_size} must be positive and divisible by {device_count} devices')


def _validate_l2t(c: ml_collections.ConfigDict, device_count: int) -> None:
  from hyena_jax.l2t import steps as l2t_steps  # pylint: disable=g-import-not-at-top
  l, d = c.l2t, c.data
  _check(0.0 <= d.meta_val_fraction < 0.5,
         f'data.meta_val_fraction={d.meta_val_fraction} must be in [0, 0.5)')
  _check(l.mode in l2t_steps.MODES, f'l2t.mode={l.mode!r} is unknown; choose from '
         f'{list(l2t_steps.MODES)}')
  if l.mode == 'off':
    return
  _check(l.lam >= 0, f'l2t.lam={l.lam} must be >= 0')
  _check(0.0 <= l.w_min <= l.w_max <= 1.0,
         f'l2t.w_min={l.w_min}, l2t.w_max={l.w_max} must satisfy 0 <= w_min <= w_max <= 1')
  _check(0.0 <= l.static_w <= 1.0, f'l2t.static_w={l.static_w} must be in [0, 1]')
  for name in ('hidden', 'mlp_width'):
    _check(l.dln[name] > 0, f'l2t.dln.{name}={l.dln[name]} must be positive')
  _check(l.dln.mlp_layers >= 0, f'l2t.dln.mlp_layers={l.dln.mlp_layers} must be >= 0')
  if l.mode == 'paper':
    _check(l.paper.memory_size >= c.train.global_batch_size,
           f'l2t.paper.memory_size={l.paper.memory_size} must be >= train.global_batch_size='
           f'{c.train.global_batch_size}')
  if l.mode == 'meta':
    m = l.meta
    _check(m.unroll >= 1, f'l2t.meta.unroll={m.unroll} must be >= 1')
    _check(m.every >= m.unroll, f'l2t.meta.every={m.every} must be >= l2t.meta.unroll='
           f'{m.unroll} (a meta step is K real student steps)')
    _check(m.teacher in ('adam', 'lstm'), f'l2t.meta.teacher={m.teacher!r}: use adam or lstm')
    _check(m.lr > 0 and m.lstm_lr > 0, 'l2t.meta.lr and l2t.meta.lstm_lr must be positive')
    _check(c.optim.eps_root > 0, f'optim.eps_root={c.optim.eps_root}: l2t.mode=meta '
           'differentiates through Adam, whose sqrt(v) has an infinite slope at v=0; '
           'set e.g. 1e-12')
    _check(m.val_batch_size is None or (m.val_batch_size > 0 and
                                         m.val_batch_size % device_count == 0),
           f'l2t.meta.val_batch_size={m.val_batch_size} must be positive and divisible by '
           f'{device_count} devices')
    if c.data.name != 'recall':
      _check(d.meta_val_fraction > 0, 'l2t.mode=meta needs a meta-validation split: set '
             'data.meta_val_fraction (e.g. 0.05); valid/test stay held out')
