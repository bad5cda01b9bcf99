"""The Transformer baseline of configs/wikitext2_hyena.py: the same LM, data and training,
with causal rotary attention (8 heads, rotary on 25% of each head) as the mixer.

  python -m hyena_jax.main --config=configs/wikitext2_transformer.py --workdir=/tmp/wt2_tf
  python -m hyena_jax.evaluate --config=configs/wikitext2_transformer.py --workdir=/tmp/wt2_tf

Attention has no filter or short convolution, so the MLP widens from 512 to 591 to match
the Hyena model's size: 5,134,396 parameters vs 5,134,848 (-0.01%; tests/models_test.py).
"""

import os

from hyena_jax import config_lib


def get_config():
  c = config_lib.load_config_file(os.path.join(os.path.dirname(__file__), 'wikitext2_hyena.py'))
  c.model.mixer = 'attention'
  c.model.attention.update(num_heads=8, rotary_pct=0.25)
  c.model.d_inner = 591
  return c
