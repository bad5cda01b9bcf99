"""Test-wide JAX settings. Subprocess tests set their own XLA_FLAGS."""

import jax

# Catch silent broadcasting bugs (nanodo does the same).
jax.config.update('jax_numpy_rank_promotion', 'raise')
