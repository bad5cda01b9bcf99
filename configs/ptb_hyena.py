"""A 3.8M-parameter Hyena LM on word-level Penn Treebank (Mikolov's 10k vocabulary), CPU-sized.

  python -m hyena_jax.main --config=configs/ptb_hyena.py --workdir=/tmp/ptb_hyena
  python -m hyena_jax.evaluate --config=configs/ptb_hyena.py --workdir=/tmp/ptb_hyena

4 layers x 192, MLP 768, order 2, context 128, batch 32 x 128 tokens, 3000 steps (13 epochs).
The goal is Zaremba et al.'s small LSTM: test perplexity 114.5 at 4.6M parameters, 13 epochs.
Result: see README "PTB and WikiText-2" (benchmarks/results/ptb_hyena.json,
benchmarks/text_baselines.sh).
The corpus comes from data.source_dir (config_lib.shared_data: this repo's CI keeps a copy in
../shared/data/ptb) or, when that is empty, from its public URL.
"""

from hyena_jax import config_lib


def get_config():
  c = config_lib.base_config()
  c.data.update(name='ptb', tokenizer='word', source_dir=config_lib.shared_data('ptb'),
                seq_len=128)
  m = c.model
  m.vocab_size = 10_000
  m.d_model, m.n_layer, m.d_inner = 192, 4, 768
  m.embed_dropout, m.resid_dropout = 0.2, 0.2
  m.hyena.update(order=2, filter_order=64, emb_dim=33, w=1.0, dropout=0.1)
  c.optim.update(lr=1.5e-3, weight_decay=0.1, warmup_steps=200, min_lr_ratio=0.05, grad_clip=1.0)
  c.train.update(global_batch_size=32, num_steps=3000, eval_every_steps=250,
                 checkpoint_every_steps=250, metrics_every_steps=10, log_every_secs=30.0)
  c.eval.update(stride=32)
  return c
