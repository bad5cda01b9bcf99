"""A Hyena LM on word-level WikiText-2 (33,278 types), sized for a 2-core CPU budget.

  python -m hyena_jax.main --config=configs/wikitext2_hyena.py --workdir=/tmp/wt2_hyena
  python -m hyena_jax.evaluate --config=configs/wikitext2_hyena.py --workdir=/tmp/wt2_hyena

4 layers x 128, MLP 512 (5.1M parameters, 4.3M of them the tied embedding), context 128,
batch 32 x 128, 800 steps = 1.6 epochs: the 33k-way softmax dominates the step on a CPU, so
this is a short run, not a converged one. Train-time eval uses the first 64k valid tokens;
hyena_jax.evaluate scores the full splits.
Result: see README "PTB and WikiText-2" (benchmarks/results/wikitext2_hyena.json).
"""

from hyena_jax import config_lib


def get_config():
  c = config_lib.base_config()
  c.data.update(name='wikitext2', tokenizer='word', seq_len=128, eval_max_tokens=65_536,
                source_dir=config_lib.shared_data('wikitext-2'))
  m = c.model
  m.vocab_size = 33_278
  m.d_model, m.n_layer, m.d_inner = 128, 4, 512
  m.embed_dropout, m.resid_dropout = 0.1, 0.1
  m.hyena.update(order=2, filter_order=64, emb_dim=33, w=1.0)
  c.optim.update(lr=2e-3, weight_decay=0.1, warmup_steps=100, min_lr_ratio=0.1, grad_clip=1.0)
  c.train.update(global_batch_size=32, num_steps=800, eval_every_steps=200,
                 checkpoint_every_steps=200, metrics_every_steps=10, log_every_secs=30.0)
  c.eval.update(stride=32)
  return c
