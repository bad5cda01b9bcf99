"""Scavenging Hyena on a real Pythia-70M: a user with its Hugging Face checkpoint runs the
same stages as configs/distill_wikitext2.py, unchanged.

  hf download EleutherAI/pythia-70m --local-dir /data/pythia-70m      # needs internet
  python -m hyena_jax.distill.pipeline \\
      --config=configs/pythia70m_to_hyena.py:layers,teacher_hf=/data/pythia-70m --workdir=/tmp/p70m

ARG = layers|e2e,teacher_hf=DIR[,init=WORKDIR][,mode=...][,attn_init=0|1][,kl=W]. The
student is configs/pythia_70m.py's model with every attention replaced by an order-2 Hyena
(its in_proj/out_proj have qkv's and dense's shapes); data: WikiText-2, GPT-NeoX-20B
tokenizer. The paper reports WikiText perplexity 51.4 (teacher) and 121.2 (distilled Hyena).
"""

import os

from hyena_jax import config_lib
from hyena_jax.distill import steps as distill_steps


def get_config(arg: str = 'layers'):
  run, *opts = arg.split(',')
  base = os.path.join(os.path.dirname(__file__), 'pythia_70m.py')
  c = config_lib.load_config_file(base)
  c.model.mixer = 'hyena'
  c.model.hyena.update(order=2, filter_order=64, emb_dim=33, w=1.0)
  c.distill.stage = run
  c.optim.lr = 1e-3
  distill_steps.apply_options(c, opts, arg)
  return c
