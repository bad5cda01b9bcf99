"""Flax NNX modules: parameter containers that call hyena_jax.ops."""

from hyena_jax.models.attention import CausalSelfAttention
from hyena_jax.models.hyena import HyenaFilter, HyenaOperator
from hyena_jax.models.longhorn import LonghornMixer
from hyena_jax.models.lm import LM, MIXERS, padded_vocab
