"""Hyena's implicit long filter as pure functions: positional features, MLP with sine, decay."""

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def positional_features(l_max: int, emb_dim: int) -> tuple[np.ndarray, np.ndarray]:
  """z (l_max x emb_dim) = [t, Re e^{-i f_k w_n}, Im e^{-i f_k w_n}] and t (l_max x 1).

  t_n = n/(l_max-1) in [0, 1]; w_n = 2 pi n / l_max; f = linspace(1e-4, K-1, K), K = (emb_dim-1)//2.
  Built in numpy (float32) so that a frozen z is a compile-time constant, not state.
  """
  if emb_dim < 3 or emb_dim % 2 == 0:
    raise ValueError(f'emb_dim must be odd and >= 3 (time, cos, sin), got {emb_dim}')
  bands = (emb_dim - 1) // 2
  t_Lx1 = np.linspace(0.0, 1.0, l_max, dtype=np.float64)[:, None]
  w_Lx1 = 2 * math.pi * np.arange(l_max, dtype=np.float64)[:, None] / l_max
  f_K = np.linspace(1e-4, bands - 1, bands, dtype=np.float64)
  # Match torch, which builds these in float32 before taking exp(-i f w).
  fw = (f_K[None, :].astype(np.float32) * w_Lx1.astype(np.float32)).astype(np.float64)
  z_LxE = np.concatenate([t_Lx1, np.cos(fw), -np.sin(fw)], axis=-1).astype(np.float32)
  return z_LxE, t_Lx1.astype(np.float32)


def decay_rates(channels: int, fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5,
                target: float = 1e-2) -> np.ndarray:
  """|delta_c|: channel c's window exp(-t |delta_c|) reaches `target` at t = pct of l_max."""
  max_decay = math.log(target) / fast_decay_pct
  min_decay = math.log(target) / slow_decay_pct
  return np.abs(np.linspace(min_decay, max_decay, channels, dtype=np.float32))


def sine_mlp(z_LxE: jax.Array, kernels: Sequence[jax.Array], biases: Sequence[jax.Array | None],
             omega_F: jax.Array) -> jax.Array:
  """dense -> sin(omega x) for every layer but the last; the last is linear (no bias)."""
  x = z_LxE
  for i, (w, b) in enumerate(zip(kernels, biases)):
    x = x @ w
    if b is not None:
      x = x + b[None]
    if i < len(kernels) - 1:
      x = jnp.sin(omega_F[None] * x)
  return x


def modulate(h_LxC: jax.Array, t_Lx1: jax.Array, decay_C: jax.Array, shift: float = 0.0
             ) -> jax.Array:
  """Exponential decay window h(t) * (exp(-t |delta|) + shift)."""
  return h_LxC * (jnp.exp(-t_Lx1 * decay_C[None]) + shift)
