"""L2T-Hyena on word-level PTB: one config, one arm of the comparison per argument.

  python -m hyena_jax.main --config=configs/l2t_ptb.py:ARM --workdir=/tmp/l2t_ptb/ARM
  python -m hyena_jax.evaluate --config=configs/l2t_ptb.py:ARM --workdir=/tmp/l2t_ptb/ARM \\
      --config.eval.modes=nonoverlap,l2t

ARM (the L2T issue's table; `bash benchmarks/l2t_ptb.sh` runs them all for 2 seeds):
  transformer  causal attention of the same size, CE only
  longhorn     the Longhorn SSM (5 blocks without MLP, expand 2, d_state 16), CE only
  ce           Hyena, CE only
  static25     Hyena, (1 - w) CE + w 0.1 mean(logits^2) at fixed w = 0.25
  static50     the same at w = 0.5
  paper        DLN + memory teacher, the official L2T-Hyena code's mechanism
  meta1        DLN trained by the true meta-gradient through K = 1 student step, Adam teacher
  meta5lstm    K = 5 unrolled steps, L2T-DLN's LSTM teacher
Append `,seed=N` for another seed (e.g. `:ce,seed=1`).

Student: the L2T-Hyena code's size (d_model 256, context 64, 10k vocab, ~4.8M parameters)
as our standard Hyena: 4 pre-LN blocks with MLP 512 = 4,790,016 parameters. Every arm trains
on the same 95% of PTB train (the last 5% is the meta-validation split, used only by the
meta arms), with the same optimizer (Adam with eps_root, which the meta-gradient needs), steps,
batches and dropout. Budget and results: README "L2T-Hyena on PTB".
"""

from hyena_jax import config_lib

ARMS = ('transformer', 'longhorn', 'ce', 'static25', 'static50', 'paper', 'meta1', 'meta5lstm')


def get_config(arg: str = 'ce'):
  arm, *opts = arg.split(',')
  if arm not in ARMS:
    raise ValueError(f'unknown arm {arm!r}; choose from {ARMS}')
  c = config_lib.base_config()
  for opt in opts:
    k, v = opt.split('=')
    if k != 'seed':
      raise ValueError(f'unknown option {k!r} in {arg!r} (only seed=N)')
    c.seed = int(v)
  c.data.update(name='ptb', tokenizer='word', source_dir=config_lib.shared_data('ptb'),
                seq_len=64, meta_val_fraction=0.05)
  m = c.model
  m.vocab_size = 10_000
  m.d_model, m.n_layer, m.d_inner = 256, 4, 512
  m.embed_dropout, m.resid_dropout = 0.1, 0.1
  m.hyena.update(order=2, filter_order=64, emb_dim=33, w=1.0, dropout=0.0)
  if arm == 'transformer':
    m.mixer = 'attention'
    m.attention.update(num_heads=8, rotary_pct=0.25)
    m.d_inner = 568  # 4,783,840 parameters: within 0.2% of the Hyena student.
  elif arm == 'longhorn':
    m.mixer = 'longhorn'
    # 4,710,912 parameters (1.7% fewer): the closest layer count; blocks have no MLP.
    m.n_layer, m.d_inner = 5, 0
  c.optim.update(lr=1.5e-3, weight_decay=0.1, warmup_steps=100, min_lr_ratio=0.05,
                 grad_clip=1.0, eps_root=1e-12)
  c.train.update(global_batch_size=32, num_steps=400, eval_every_steps=100,
                 checkpoint_every_steps=100, metrics_every_steps=10, log_every_secs=60.0)
  c.eval.update(modes='nonoverlap', l2t_every=8)
  l = c.l2t
  if arm.startswith('static'):
    l.update(mode='static', static_w=int(arm[len('static'):]) / 100)
  elif arm == 'paper':
    l.mode = 'paper'
  elif arm == 'meta1':
    l.mode = 'meta'
    l.meta.update(unroll=1, every=10, teacher='adam', lr=1e-3)
  elif arm == 'meta5lstm':
    l.mode = 'meta'
    # Every 50: a K=5 LSTM meta step is two differentiable 5-step unrolls, ~50 plain steps
    # of compute here, so this arm is already 2x the cost of the others (README budget).
    l.meta.update(unroll=5, every=50, teacher='lstm', lr=1e-3)
  return c
