"""One causal LM (safari `ConvLMHeadModel` shape) whose sequence mixer is chosen by config."""

import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hyena_jax import ops
from hyena_jax.models.attention import CausalSelfAttention
from hyena_jax.models.hyena import HyenaOperator, dense
from hyena_jax.models.longhorn import LonghornMixer

# name -> constructor(d_model, model_cfg, n_layer=, rngs=).
MIXERS: dict[str, Callable[..., nnx.Module]] = {
    'hyena': HyenaOperator,
    'attention': CausalSelfAttention,
    'longhorn': LonghornMixer,
}


def padded_vocab(cfg: ml_collections.ConfigDict) -> int:
  m = cfg.pad_vocab_to
  return int(math.ceil(cfg.vocab_size / m) * m)


RESIDUALS = ('sequential', 'parallel')
GELUS = {'tanh': True, 'exact': False}  # model.gelu -> jax.nn.gelu(approximate=).


class Mlp(nnx.Module):

  def __init__(self, d_model: int, d_inner: int, n_layer: int, dtype, rngs: nnx.Rngs, *,
               approximate: bool = True):
    self.fc1 = dense(d_model, d_inner, rngs, dtype=dtype)
    self.fc2 = dense(d_inner, d_model, rngs, std=0.02 / math.sqrt(2 * n_layer), dtype=dtype)
    self.approximate = approximate

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=self.approximate))


class Block(nnx.Module):
  """Pre-LN residual block: x + mixer(LN1 x), then + MLP(LN2 of that) ('sequential'), or
  x + mixer(LN1 x) + MLP(LN2 x) ('parallel', GPT-NeoX). d_inner = 0: the mixer alone."""

  def __init__(self, cfg: ml_collections.ConfigDict, rngs: nnx.Rngs):
    dtype = jnp.dtype(cfg.dtype)
    ln = lambda: nnx.LayerNorm(cfg.d_model, epsilon=cfg.layer_norm_eps, rngs=rngs)
    # Creation order (ln1, ln2, mixer, mlp) fixes the init stream: keep it, or seeds change.
    self.ln1 = ln()
    self.ln2 = ln() if cfg.d_inner else None
    self.mixer = MIXERS[cfg.mixer](cfg.d_model, cfg, n_layer=cfg.n_layer, rngs=rngs)
    self.mlp = (Mlp(cfg.d_model, cfg.d_inner, cfg.n_layer, dtype, rngs,
                    approximate=GELUS[cfg.gelu]) if cfg.d_inner else None)
    self.parallel = cfg.residual == 'parallel'
    self.resid_dropout = cfg.resid_dropout

  def __call__(self, x_BxLxD, key=None, *, return_mixer_output: bool = False,
               state=None, pos=0):
    """The block output; with return_mixer_output also the mixer's (before dropout), the
    quantity layer-wise distillation matches. With a mixer decode `state` (tokens at
    positions pos..): (output, new_state)."""
    k = [None] * 3 if key is None else list(jax.random.split(key, 3))
    dt = x_BxLxD.dtype
    if state is not None:
      m, state = self.mixer(self.ln1(x_BxLxD).astype(dt), state, pos=pos)
    else:
      m = self.mixer(self.ln1(x_BxLxD).astype(dt), key=k[0])
    y = ops.dropout(m, self.resid_dropout, k[1]).astype(dt)
    if self.mlp is None:
      out = x_BxLxD + y
    else:
      h_BxLxD = x_BxLxD if self.parallel else x_BxLxD + y
      z = self.mlp(self.ln2(h_BxLxD).astype(dt))
      z = ops.dropout(z, self.resid_dropout, k[2]).astype(dt)
      out = x_BxLxD + y + z if self.parallel else h_BxLxD + z
    if state is not None:
      return out, state
    return (out, m) if return_mixer_output else out


class LM(nnx.Module):
  """Token embedding -> blocks -> final LN -> logits over the padded vocab (a head tied to the
  embedding, or its own table when model.tie_embeddings=False)."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    if cfg.mixer not in MIXERS:
      raise ValueError(f'unknown model.mixer {cfg.mixer!r}; choose one of {sorted(MIXERS)}')
    if cfg.residual not in RESIDUALS or cfg.gelu not in GELUS:
      raise ValueError(f'model.residual={cfg.residual!r}, model.gelu={cfg.gelu!r}: choose from '
                       f'{RESIDUALS} and {tuple(GELUS)}')
    self.n_layer, self.embed_dropout = cfg.n_layer, cfg.embed_dropout
    self.vocab_size = cfg.vocab_size
    self.dtype = jnp.dtype(cfg.dtype)
    # dtype given explicitly: nnx.Embed would otherwise look up in float32 whatever the table.
    self.embed = nnx.Embed(padded_vocab(cfg), cfg.d_model, dtype=self.dtype,
                           embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layer)])
    self.ln_f = nnx.LayerNorm(cfg.d_model, epsilon=cfg.layer_norm_eps, rngs=rngs)
    # Last, so a tied model's init stream is unchanged. An Embed (param `embedding`), not a
    # Linear: initialised like the input table and, like it, not weight-decayed (optim.decays).
    self.head = None if cfg.tie_embeddings else nnx.Embed(
        padded_vocab(cfg), cfg.d_model, dtype=self.dtype,
        embedding_init=nnx.initializers.normal(0.02), rngs=rngs)

  def __call__(self, tokens_BxL: jax.Array, *, key: jax.Array | None = None,
               return_hidden: bool = False):
    """Float32 logits (B, L, padded vocab). `key` enables dropout (training).

    Padding rows get -1e9: they hold no probability, so perplexity is over the true vocab.
    return_hidden: also return the residual stream [embedding output, each block's output]
    (n_layer + 1 arrays (B, L, D), before ln_f), e.g. for layer-wise distillation.
    """
    keys = [None] * (self.n_layer + 1) if key is None else list(
        jax.random.split(key, self.n_layer + 1))
    x_BxLxD = self.embed(tokens_BxL).astype(self.dtype)
    x_BxLxD = ops.dropout(x_BxLxD, self.embed_dropout, keys[0])
    hidden = [x_BxLxD]
    for block, k in zip(self.blocks, keys[1:]):
      x_BxLxD = block(x_BxLxD, k)
      hidden.append(x_BxLxD)
    logits = self.logits(x_BxLxD)
    return (logits, hidden) if return_hidden else logits

  def init_cache(self, batch_size: int, max_len: int) -> dict:
    """Decode cache for positions 0..max_len-1: every mixer's state and the next position."""
    return {'pos': jnp.zeros((), jnp.int32),
            'layers': [b.mixer.init_state(batch_size, self.dtype, max_len=max_len)
                       for b in self.blocks]}

  def decode(self, tokens_BxT: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
    """Logits (B, T, V) of T tokens that follow the cache's positions, and the cache after
    them: prefill (T = prompt length) then T = 1 per generated token. Equals the full
    forward on the concatenated sequence (tests/generate_test.py)."""
    pos = cache['pos']
    x_BxTxD = self.embed_tokens(tokens_BxT)
    layers = []
    for block, state in zip(self.blocks, cache['layers']):
      x_BxTxD, state = block(x_BxTxD, state=state, pos=pos)
      layers.append(state)
    return self.logits(x_BxTxD), {'pos': pos + tokens_BxT.shape[1], 'layers': layers}

  def embed_tokens(self, tokens_BxL: jax.Array) -> jax.Array:
    """The residual stream's start (no dropout): for code that runs the blocks itself."""
    return self.embed(tokens_BxL).astype(self.dtype)

  def logits(self, x_BxLxD: jax.Array) -> jax.Array:
    """ln_f and the head on the last block's output: float32, padding rows at -1e9."""
    x_BxLxD = self.ln_f(x_BxLxD)
    table_VxD = (self.embed if self.head is None else self.head).embedding[...]
    logits = ops.channels.logits_from_table(ops.f32(x_BxLxD), ops.f32(table_VxD))
    if table_VxD.shape[0] != self.vocab_size:
      real_V = jnp.arange(table_VxD.shape[0]) < self.vocab_size
      logits = jnp.where(real_V[None, None, :], logits, -1e9)
    return logits
