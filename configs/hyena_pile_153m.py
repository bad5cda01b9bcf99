"""Hyena-2 153M on the Pile (paper Table 4.4; safari configs/experiment/pile/hyena.yaml).

  python -m hyena_jax.main --config=configs/hyena_pile_153m.py --workdir=/path/to/wd

18 layers x 864, d_inner 1728, order 2, filter_order 64, emb_dim 33, w 14, l_max 2048,
GPT-2 vocab 50257 padded to 50264: 153,700,416 parameters (152,483,904 with z frozen).
Target (paper): 13.3 ppl after 5B tokens (this schedule: 10k steps x 256 x 2048 tokens).
Needs the Pile text pipeline (not in this build); on this CPU only a smoke run is possible:
  --config.data.name=random_tokens --config.data.seq_len=64 --config.train.global_batch_size=2
"""

from hyena_jax import config_lib


def get_config():
  c = config_lib.base_config()
  c.data.name = 'pile'
  c.data.seq_len = 2048
  m = c.model
  m.vocab_size = 50257
  m.d_model, m.n_layer, m.d_inner = 864, 18, 1728
  m.l_max = 2048
  m.embed_dropout, m.resid_dropout = 0.1, 0.0
  m.hyena.update(order=2, filter_order=64, emb_dim=33, w=14.0, learn_pos_emb=True)
  c.optim.update(lr=6e-4, weight_decay=0.1, b2=0.999, warmup_steps=100, min_lr_ratio=0.1,
                 grad_clip=1.0)
  c.train.update(global_batch_size=256, num_steps=10_000, eval_every_steps=1000,
                 checkpoint_every_steps=1000, metrics_every_steps=10)
  return c
