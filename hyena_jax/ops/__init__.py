"""Pure jax.numpy kernels. No Flax in here: models/ holds the parameters and calls these."""

from hyena_jax.ops.attention import (attend, blockwise_causal_attention, cached_attention,
                                     causal_attention, rotary)
from hyena_jax.ops.fftconv import cached_causal_conv, decode_taps, direct_causal_conv, fftconv
from hyena_jax.ops.filters import decay_rates, modulate, positional_features, sine_mlp
from hyena_jax.ops.shortconv import causal_depthwise_conv
from hyena_jax.ops.misc import dropout, f32
from hyena_jax.ops import channels, longhorn, modal
