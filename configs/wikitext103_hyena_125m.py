"""Hyena-3 125M on WikiText-103 (paper Table 4.3: 18.6 test ppl; GPT-2 tokenizer).

  python -m hyena_jax.main --config=configs/wikitext103_hyena_125m.py --workdir=/path/to/wd \
      --config.data.tokenizer_path=/path/to/gpt2_tokenizer.json
  python -m hyena_jax.evaluate --config=configs/wikitext103_hyena_125m.py --workdir=/path/to/wd

12 layers x 768, FFN 3072, order 3 (two long convolutions), filter MLP 64 wide / 4 deep,
sine frequency 14 (paper Table A.4); optimisation from safari's wt103 base (lr 6e-4, wd 0.1,
batch 512 x 1024, 22,500 steps, warmup 225, cosine to 0.1x). safari ships no Hyena WT103
config; its maintainer recommends dropout 0.2 for this dataset (safari issue #28).
Data: the tokenized wikitext-103-v1 release, downloaded by the tfds builder (or
--config.data.source_dir=DIR holding wiki.{train,valid,test}.tokens), GPT-2 BPE from a local
tokenizers JSON. Not run here (no WikiText-103 offline, and 22.5k steps of 512x1024 tokens is
a multi-GPU job); smoke run on this CPU:
  --config.data.name=random_tokens --config.data.seq_len=64 --config.train.global_batch_size=2
"""

from hyena_jax import config_lib


def get_config():
  c = config_lib.base_config()
  c.data.update(name='wikitext103', tokenizer='bpe', seq_len=1024, eval_max_tokens=1_048_576,
                source_dir=config_lib.shared_data('wikitext-103'),
                tokenizer_path=config_lib.shared_data('tokenizers/gpt2_tokenizer.json'))
  m = c.model
  m.vocab_size = 50257
  m.d_model, m.n_layer, m.d_inner = 768, 12, 3072
  m.l_max = 1024
  m.embed_dropout, m.resid_dropout = 0.2, 0.2
  m.hyena.update(order=3, filter_order=64, emb_dim=33, w=14.0, learn_pos_emb=True)
  c.optim.update(lr=6e-4, weight_decay=0.1, warmup_steps=225, min_lr_ratio=0.1, grad_clip=1.0)
  c.train.update(global_batch_size=512, num_steps=22_500, eval_every_steps=1000,
                 checkpoint_every_steps=1000, metrics_every_steps=10)
  return c
