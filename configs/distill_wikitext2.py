"""Scavenging Hyena on WikiText-2 with the GPT-NeoX-20B tokenizer: one argument per run.

  # 1. the teacher: a small GPT-NeoX (Pythia-style: parallel residual, exact GELU, untied)
  python -m hyena_jax.main --config=configs/distill_wikitext2.py:teacher --workdir=/tmp/dw2/teacher
  # 2. stage 1 (layer matching, MSE on every mixer output), then stage 2 (CE [+ KL])
  python -m hyena_jax.main --config=configs/distill_wikitext2.py:layers,teacher=/tmp/dw2/teacher \\
      --workdir=/tmp/dw2/layers
  python -m hyena_jax.main --config=configs/distill_wikitext2.py:e2e,teacher=/tmp/dw2/teacher,init=/tmp/dw2/layers \\
      --workdir=/tmp/dw2/e2e
  # or both stages in one command (ROOT/layers, ROOT/e2e; each resumes):
  python -m hyena_jax.distill.pipeline --config=configs/distill_wikitext2.py:layers,teacher=/tmp/dw2/teacher \\
      --workdir=/tmp/dw2
  # the baseline: the same Hyena trained from scratch
  python -m hyena_jax.main --config=configs/distill_wikitext2.py:scratch --workdir=/tmp/dw2/scratch

ARG = RUN[,teacher=WORKDIR][,init=WORKDIR][,mode=cumulative|teacher_forced][,attn_init=0|1]
[,kl=W][,seed=N], RUN in teacher | scratch | layers | e2e. Model: 4 blocks x 128, MLP 512,
context 128, untied 50,304-row embeddings (the tokenizer's 50,277 types padded). The paper's
numbers (Pythia-70M teacher 51.4, distilled Hyena 121.2 WikiText perplexity) are at 70M
parameters and web-scale tokens; configs/pythia70m_to_hyena.py runs the same stages on a
real Pythia checkpoint. All runs: `bash benchmarks/distill_wikitext2.sh`. Result on the
2-core CPU (whole splits, valid/test token perplexity): teacher 145.9/127.6; Hyena from
scratch 180.2/160.0; distilled + fine-tuned with attention init, cumulative 145.9/126.8,
teacher-forced 143.7/124.6 (README "Scavenging Hyena").
"""

from hyena_jax import config_lib
from hyena_jax.distill import steps as distill_steps

RUNS = ('teacher', 'scratch', 'layers', 'e2e')


def get_config(arg: str = 'teacher'):
  run, *opts = arg.split(',')
  if run not in RUNS:
    raise ValueError(f'unknown run {run!r}; choose from {RUNS}')
  c = config_lib.base_config()
  c.data.update(name='wikitext2', tokenizer='bpe', seq_len=128, eval_max_tokens=32_768,
                source_dir=config_lib.shared_data('wikitext-2'),
                tokenizer_path=config_lib.shared_data('tokenizers/20B_tokenizer.json'))
  m = c.model
  m.mixer = 'attention' if run == 'teacher' else 'hyena'
  m.vocab_size = 50304
  m.d_model, m.n_layer, m.d_inner = 128, 4, 512
  m.residual, m.gelu, m.tie_embeddings = 'parallel', 'exact', False
  m.embed_dropout, m.resid_dropout = 0.0, 0.0
  m.attention.update(num_heads=4, rotary_pct=0.25)
  m.hyena.update(order=2, filter_order=64, emb_dim=33, w=1.0)
  # Equal student budgets: scratch 300 steps = layers 100 (25 per layer) + e2e 200, at 16 x 128
  # tokens a step (614K tokens, ~0.25 epoch); the teacher sees 1.23M (600 steps).
  steps = {'teacher': 600, 'scratch': 300, 'layers': 100, 'e2e': 200}[run]
  c.optim.update(lr=2e-3, b2=0.95, weight_decay=0.1, warmup_steps=steps // 6, min_lr_ratio=0.1)
  c.train.update(global_batch_size=16, num_steps=steps, eval_every_steps=50,
                 checkpoint_every_steps=100, metrics_every_steps=10, log_every_secs=30.0)
  if run in ('layers', 'e2e'):
    c.distill.stage = run
    c.optim.update(lr=1e-3, warmup_steps=10 if run == 'layers' else 30)
  distill_steps.apply_options(c, opts, arg)
  return c
