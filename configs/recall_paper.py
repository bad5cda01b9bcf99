"""The Hyena paper's associative-recall models (Table 4.2): 2 layers, width 64, vocab 30.

  python -m hyena_jax.main --config=configs/recall_paper.py:131072 --workdir=/path/to/wd

The argument is the sequence length (default 1024; the paper's table uses 30K, 64K, 131K).
Settings follow safari's hyena-131k-30vs.yaml: d_inner 256, filter emb_dim 5, filter MLP
width 64, w 10, frozen positional features, filter weight decay 0, embed dropout 0.1,
AdamW lr 5e-4 wd 0.1, batch 32, 10% warmup. safari trains 400 epochs over 4000 fixed
examples (50k steps); here every batch is fresh from the on-the-fly generator.
Paper result (final-token accuracy): 100.0 at 30K and 64K, 97.2 at 131K. These lengths are
GPU-scale; on a 2-core CPU use the default config or a length like 1024.
"""

from hyena_jax import config_lib


def get_config(seq_len: str = '1024'):
  c = config_lib.base_config()
  c.data.name = 'recall'
  c.data.seq_len = int(seq_len)
  c.data.vocab_size = 30
  c.data.num_eval = 512
  m = c.model
  m.d_model, m.n_layer, m.d_inner = 64, 2, 256
  m.embed_dropout, m.resid_dropout = 0.1, 0.0
  m.hyena.update(order=2, filter_order=64, emb_dim=5, w=10.0, learn_pos_emb=False)
  c.optim.update(lr=5e-4, weight_decay=0.1, filter_weight_decay=0.0, warmup_steps=5000)
  c.train.update(global_batch_size=32, num_steps=50_000, eval_every_steps=1000,
                 checkpoint_every_steps=1000, metrics_every_steps=10)
  return c
