"""Pythia-70M (GPT-NeoX) exactly, as our LM with mixer='attention': 70,426,624 parameters.

  python -m hyena_jax.main --config=configs/pythia_70m.py --workdir=/tmp/pythia_70m
  python -m hyena_jax.evaluate --config=configs/pythia_70m.py --workdir=/tmp/pythia_70m

EleutherAI/pythia-70m's config.json: 6 layers x 512, 8 heads, MLP 2048 with exact (erf) GELU,
rotary on 25% of each head (base 10000), parallel residual (x + attn(LN1 x) + mlp(LN2 x)),
untied output head, LayerNorm eps 1e-5, no dropout, 50,304 embedding rows (the GPT-NeoX-20B
tokenizer's 50,277 types, padded; like HF, every row is scored). Parameters: 2 x 50304 x 512
(embed_in, embed_out) + 6 x 3,152,384 + 1,024 (final LN) = 70,426,624.
Optimiser: Pythia's (Adam 0.9/0.95, lr 1e-3 cosine to 0.1x, wd 0.01, clip 1); data and
steps are a WikiText-2 run sized for one GPU, not Pythia's 300B Pile tokens.

Starting from an HF Pythia checkpoint: the trainer has no init-from-HF option (yet); load one
for evaluation or your own loop in Python/Colab from a local directory (config.json +
model.safetensors or pytorch_model.bin, e.g. `hf download EleutherAI/pythia-70m --local-dir DIR`):
  from hyena_jax.models import neox_import
  model = neox_import.lm_from_hf('/path/to/pythia-70m')    # an LM; dtype='bfloat16' on GPU
  model_cfg, params = neox_import.load_hf('/path/to/pythia-70m')  # cfg == this file's model
"""

from hyena_jax import config_lib


def get_config():
  c = config_lib.base_config()
  c.data.update(name='wikitext2', tokenizer='bpe', seq_len=512, eval_max_tokens=262_144,
                source_dir=config_lib.shared_data('wikitext-2'),
                tokenizer_path=config_lib.shared_data('tokenizers/20B_tokenizer.json'))
  m = c.model
  m.mixer = 'attention'
  m.vocab_size = 50304
  m.d_model, m.n_layer, m.d_inner = 512, 6, 2048
  m.l_max = 2048                   # max_position_embeddings (rotary has no table to outgrow).
  m.layer_norm_eps = 1e-5
  m.residual, m.gelu, m.tie_embeddings = 'parallel', 'exact', False
  m.embed_dropout, m.resid_dropout = 0.0, 0.0
  m.attention.update(num_heads=8, rotary_pct=0.25, rotary_base=10000.0)
  c.optim.update(lr=1e-3, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.01, warmup_steps=100,
                 min_lr_ratio=0.1, grad_clip=1.0)
  c.train.update(global_batch_size=32, num_steps=2000, eval_every_steps=250,
                 checkpoint_every_steps=250, metrics_every_steps=10, log_every_secs=30.0)
  return c
