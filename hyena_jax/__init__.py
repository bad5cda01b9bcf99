"""hyena_jax: long-convolution and state-space language models in JAX/Flax NNX."""
