"""Default: a 2-layer, width-64 Hyena on associative recall (vocab 30, length 64), no download.

  python -m hyena_jax.main --config=configs/default.py --workdir=/tmp/hyena_default

Expected: >= 99% held-out final-token accuracy (RESULT filled in from the committed log).
"""

from hyena_jax import config_lib


def get_config():
  c = config_lib.base_config()
  c.data.name = 'recall'
  c.data.seq_len = 64
  c.data.vocab_size = 30
  c.model.hyena.emb_dim = 5
  c.model.hyena.w = 10.0
  c.train.num_steps = 1000
  return c
