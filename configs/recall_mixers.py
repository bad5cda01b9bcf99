"""Associative recall (configs/default.py's task: vocab 10) with any mixer at equal parameters.

  python -m hyena_jax.main --config=configs/recall_mixers.py:128,mixer=longhorn \\
      --workdir=/tmp/recall_mixers/longhorn128

The argument is SEQ_LEN[,mixer=hyena|attention|longhorn][,seed=N]. Parameters (any SEQ_LEN):
hyena 128,512 (2 blocks, width 64, MLP 256); attention 128,468 (1 head, MLP widened to 362 in
place of the filter MLPs); longhorn 124,032 (4 blocks without MLP: expand 2, d_state 16, as
the Longhorn code doubles the layers). `bash benchmarks/mixers_synthetic.sh` runs the README
table "Associative recall and MQAR by mixer" (2,000 steps per run on the 2-core CPU).
"""

import os

from hyena_jax import config_lib

MIXERS = ('hyena', 'attention', 'longhorn')


def get_config(arg: str = '64'):
  seq_len, *opts = arg.split(',')
  c = config_lib.load_config_file(os.path.join(os.path.dirname(__file__), 'default.py'))
  for opt in opts:
    k, v = opt.split('=')
    if k == 'mixer' and v in MIXERS:
      c.model.mixer = v
    elif k == 'seed':
      c.seed = int(v)
    else:
      raise ValueError(f'bad option {opt!r} in {arg!r}: use mixer={"|".join(MIXERS)} or seed=N')
  c.data.seq_len = int(seq_len)
  c.optim.lr = 1e-3  # What the README's mixer table was run with (default.py has since moved to 2e-3).
  m = c.model
  if m.mixer == 'attention':
    m.attention.update(num_heads=1, rotary_pct=0.25)
    m.d_inner = 362
  elif m.mixer == 'longhorn':
    m.n_layer, m.d_inner = 4, 0
    m.longhorn.update(d_state=16, expand=2)
  c.train.update(num_steps=2000, eval_every_steps=250, checkpoint_every_steps=500,
                 metrics_every_steps=10, log_every_secs=30.0)
  return c
