"""hyena_jax: long-convolution and state-space language models in JAX/Flax NNX."""

import importlib.metadata
import os


def _apply_xla_cpu_defaults() -> None:
  """Turn off XLA:CPU's YNNPACK reduce fusions, a slow path for the reductions in Hyena's
  backward pass (jax-ml/jax#37465; 1.3x faster training steps here, same numbers).

  Only for jaxlib versions known to have the flag (an unknown flag aborts XLA), only if the
  user has not set it, and it must happen before JAX creates its CPU backend.
  Opt out with HYENA_JAX_XLA_DEFAULTS=0.
  """
  if os.environ.get('HYENA_JAX_XLA_DEFAULTS', '1') == '0':
    return
  try:
    version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return
  flags = os.environ.get('XLA_FLAGS', '')
  if version.startswith('0.10.') and 'ynn_fusion_type' not in flags:
    os.environ['XLA_FLAGS'] = (flags + ' --xla_cpu_experimental_ynn_fusion_type=-reduce').strip()


_apply_xla_cpu_defaults()
