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

# name -> constructor(d_model, model_cfg, n_layer=, rngs=); Longhorn joins here.
MIXERS: dict[str, Callable[..., nnx.Module]] = {
    'hyena': HyenaOperator,
    'attention': CausalSelfAttention,
}


def padded_vocab(cfg: ml_collections.ConfigDict) -> int:
  m = cfg.pad_vocab_to
  return int(math.ceil(cfg.vocab_size / m) * m)


class Mlp(nnx.Module):

  def __init__(self, d_model: int, d_inner: int, n_layer: int, dtype, rngs: nnx.Rngs):
    self.fc1 = dense(d_model, d_inner, rngs, dtype=dtype)
    self.fc2 = dense(d_inner, d_model, rngs, std=0.02 / math.sqrt(2 * n_layer), dtype=dtype)

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=True))


class Block(nnx.Module):
  """Pre-LN residual block: x + mixer(LN(x)), then x + MLP(LN(x))."""

  def __init__(self, cfg: ml_collections.ConfigDict, rngs: nnx.Rngs):
    dtype = jnp.dtype(cfg.dtype)
    ln = lambda: nnx.LayerNorm(cfg.d_model, epsilon=cfg.layer_norm_eps, rngs=rngs)
    self.ln1, self.ln2 = ln(), ln()
    self.mixer = MIXERS[cfg.mixer](cfg.d_model, cfg, n_layer=cfg.n_layer, rngs=rngs)
    self.mlp = Mlp(cfg.d_model, cfg.d_inner, cfg.n_layer, dtype, rngs)
    self.resid_dropout = cfg.resid_dropout

  def __call__(self, x_BxLxD, key=None):
    k = [None] * 3 if key is None else list(jax.random.split(key, 3))
    dt = x_BxLxD.dtype
    y = self.mixer(self.ln1(x_BxLxD).astype(dt), key=k[0])
    x_BxLxD = x_BxLxD + ops.dropout(y, self.resid_dropout, k[1]).astype(dt)
    y = self.mlp(self.ln2(x_BxLxD).astype(dt))
    return x_BxLxD + ops.dropout(y, self.resid_dropout, k[2]).astype(dt)


class LM(nnx.Module):
  """Token embedding (tied to the head) -> blocks -> final LN -> logits over the padded vocab."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    if cfg.mixer not in MIXERS:
      raise ValueError(f'unknown model.mixer {cfg.mixer!r}; choose one of {sorted(MIXERS)}')
    self.n_layer, self.embed_dropout = cfg.n_layer, cfg.embed_dropout
    self.vocab_size = cfg.vocab_size
    self.dtype = jnp.dtype(cfg.dtype)
    # dtype given explicitly: nnx.Embed would otherwise look up in float32 whatever the table.
    self.embed = nnx.Embed(padded_vocab(cfg), cfg.d_model, dtype=self.dtype,
                           embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layer)])
    self.ln_f = nnx.LayerNorm(cfg.d_model, epsilon=cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, tokens_BxL: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
    """Float32 logits (B, L, padded vocab). `key` enables dropout (training).

    Padding rows get -1e9: they hold no probability, so perplexity is over the true vocab.
    """
    keys = [None] * (self.n_layer + 1) if key is None else list(
        jax.random.split(key, self.n_layer + 1))
    x_BxLxD = self.embed(tokens_BxL).astype(self.dtype)
    x_BxLxD = ops.dropout(x_BxLxD, self.embed_dropout, keys[0])
    for block, k in zip(self.blocks, keys[1:]):
      x_BxLxD = block(x_BxLxD, k)
    x_BxLxD = self.ln_f(x_BxLxD)
    table_VxD = self.embed.embedding[...]
    logits = jnp.einsum('bld,vd->blv', ops.f32(x_BxLxD), ops.f32(table_VxD))
    if table_VxD.shape[0] == self.vocab_size:
      return logits
    real_V = jnp.arange(table_VxD.shape[0]) < self.vocab_size
    return jnp.where(real_V[None, None, :], logits, -1e9)
