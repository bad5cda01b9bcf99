"""The Transformer baseline of configs/ptb_hyena.py: the same LM, data and training, with
causal rotary attention (8 heads, rotary on 25% of each head) as the mixer.

  python -m hyena_jax.main --config=configs/ptb_transformer.py --workdir=/tmp/ptb_transformer
  python -m hyena_jax.evaluate --config=configs/ptb_transformer.py --workdir=/tmp/ptb_transformer

Attention has no filter or short convolution, so the MLP widens from 768 to 834 to match
the Hyena model's size: 3,801,480 parameters vs 3,801,216 (+0.01%; tests/models_test.py).
"""

import os

from hyena_jax import config_lib


def get_config():
  c = config_lib.load_config_file(os.path.join(os.path.dirname(__file__), 'ptb_hyena.py'))
  c.model.mixer = 'attention'
  c.model.attention.update(num_heads=8, rotary_pct=0.25)
  c.model.d_inner = 834
  return c
