"""Zoology's MQAR (multi-query associative recall) at CPU size: 2 layers, width 64, vocab 256.

  python -m hyena_jax.main --config=configs/mqar.py:64 --workdir=/tmp/mqar/hyena64
  python -m hyena_jax.main --config=configs/mqar.py:128,mixer=attention --workdir=/tmp/mqar/a128

The argument is SEQ_LEN[,mixer=hyena|attention|longhorn][,seed=N]. The data follow the
zoology paper's Figure 2 (iclr24_zoology_figure2/configs.py): num_kv_pairs = SEQ_LEN // 16
(4 at 64, 8 at 128, 16 at 256), power_a 0.01, zero filler (random_non_queries False); vocab
256 instead of 8192 keeps the embedding from dominating a CPU-sized model. Accuracy is over
the query positions of 1024 fixed held-out sequences (data.eval_seed); chance is 1/128, and
"any value of this sequence" is 1/num_kv_pairs (the plateau attention sits on first).
Parameters (any SEQ_LEN): hyena 143,872; attention 143,828 (1 head, MLP widened to 362 in
place of the filter MLPs); longhorn 139,392 (4 blocks without MLP, as zoology doubles the
non-attention layers).

Budget: zoology trains 64 epochs of 100k sequences at batch 512 (~6.4M sequences); 4000
steps here are 128k. Measured at 2,000 steps (benchmarks/mixers.sh, README "Mixers compared",
benchmarks/results/mixers_synthetic.json): attention 25.1 / 13.0%, hyena 15.8 / 6.1%, longhorn
25.8 / 12.0% at SEQ_LEN 64 / 128 — the 1/n plateau at most; at this budget it is not solved.
"""

from hyena_jax import config_lib

MIXERS = ('hyena', 'attention', 'longhorn')


def get_config(arg: str = '64'):
  seq_len, *opts = arg.split(',')
  c = config_lib.base_config()
  mixer = 'hyena'
  for opt in opts:
    k, v = opt.split('=')
    if k == 'mixer' and v in MIXERS:
      mixer = v
    elif k == 'seed':
      c.seed = int(v)
    else:
      raise ValueError(f'bad option {opt!r} in {arg!r}: use mixer={"|".join(MIXERS)} or seed=N')
  L = int(seq_len)
  c.data.update(name='mqar', seq_len=L, vocab_size=256, num_eval=1024)
  c.data.mqar.update(num_kv_pairs=L // 16, power_a=0.01, random_non_queries=False)
  m = c.model
  m.vocab_size = 256  # No marker token: every id is a key, a value or filler.
  m.mixer = mixer
  m.d_model, m.n_layer, m.d_inner = 64, 2, 256
  m.embed_dropout, m.resid_dropout = 0.0, 0.0  # zoology trains MQAR without dropout.
  m.hyena.update(order=2, filter_order=64, emb_dim=5, w=10.0)
  if mixer == 'attention':
    m.attention.update(num_heads=1, rotary_pct=0.25)
    m.d_inner = 362  # Matches the Hyena model's parameters to 0.03% (the docstring).
  elif mixer == 'longhorn':
    # Longhorn blocks have no MLP; twice the layers, as zoology does for Mamba-style mixers.
    m.n_layer, m.d_inner = 4, 0
    m.longhorn.update(d_state=16, expand=2)
  c.optim.update(lr=1e-3, weight_decay=0.1, warmup_steps=200, min_lr_ratio=0.1)
  c.train.update(global_batch_size=32, num_steps=4000, eval_every_steps=500,
                 checkpoint_every_steps=1000, metrics_every_steps=10, log_every_secs=30.0)
  return c
