"""Causal long convolution by FFT, and the O(L^2) direct reference it must equal."""

import jax
import jax.numpy as jnp

from hyena_jax.ops.misc import f32


def fftconv(u_BxLxC: jax.Array, h_LxC: jax.Array, skip_C: jax.Array | None = None,
            fft_size: int | None = None) -> jax.Array:
  """y_t = sum_{s<=t} h_{t-s} u_s (+ skip * u_t), computed as irfft(rfft(u) rfft(h)).

  The FFT runs in float32 whatever the input dtype (jnp.fft has no bf16, and half precision
  FFTs lose the long-range tail of the filter); the output is cast back to u's dtype.

  Args:
    u_BxLxC: input signal.
    h_LxC: one causal filter per channel, shared across the batch (computed once per step).
    skip_C: optional per-channel skip ("D" term), added as skip * u.
    fft_size: FFT length; must be >= 2L-1 so that the circular convolution is linear.
      Defaults to 2L (safari's choice).
  """
  L = u_BxLxC.shape[1]
  if h_LxC.shape[0] != L:
    raise ValueError(f'filter length {h_LxC.shape[0]} != sequence length {L}')
  n = 2 * L if fft_size is None else fft_size
  if n < 2 * L - 1:
    raise ValueError(f'fft_size {n} < 2L-1 = {2 * L - 1} would wrap the convolution around')
  u32_BxLxC = f32(u_BxLxC)
  uf_BxFxC = jnp.fft.rfft(u32_BxLxC, n=n, axis=1)
  hf_FxC = jnp.fft.rfft(f32(h_LxC), n=n, axis=0)
  y_BxLxC = jnp.fft.irfft(uf_BxFxC * hf_FxC[None], n=n, axis=1)[:, :L]
  if skip_C is not None:
    y_BxLxC = y_BxLxC + u32_BxLxC * f32(skip_C)[None, None]
  return y_BxLxC.astype(u_BxLxC.dtype)


def direct_causal_conv(u_BxLxC: jax.Array, h_LxC: jax.Array,
                       skip_C: jax.Array | None = None) -> jax.Array:
  """Reference: the same convolution as an explicit Toeplitz matmul (O(L^2), float32)."""
  L = u_BxLxC.shape[1]
  u32 = u_BxLxC.astype(jnp.float32)
  t = jnp.arange(L)
  lag_LxL = t[:, None] - t[None, :]
  # T[t, s, c] = h[t - s, c] for s <= t else 0.
  toeplitz_LxLxC = jnp.where((lag_LxL >= 0)[..., None],
                             h_LxC.astype(jnp.float32)[jnp.clip(lag_LxL, 0)], 0.0)
  y = jnp.einsum('tsc,bsc->btc', toeplitz_LxLxC, u32,
                 precision=jax.lax.Precision.HIGHEST)
  if skip_C is not None:
    y = y + u32 * skip_C.astype(jnp.float32)[None, None]
  return y.astype(u_BxLxC.dtype)


def decode_taps(h_SxC: jax.Array) -> jax.Array:
  """The filter reversed and zero-extended, rev_2SxC[j] = h[S-1-j] (0 for j >= S), float32:
  what cached_causal_conv slices its taps from. Built once per decode cache, not per token."""
  h32_SxC = f32(h_SxC)
  return jnp.concatenate([h32_SxC[::-1], jnp.zeros_like(h32_SxC)], axis=0)


def cached_causal_conv(hist_BxSxC: jax.Array, rev_2SxC: jax.Array, pos: jax.Array, T: int
                       ) -> jax.Array:
  """Outputs at positions pos..pos+T-1 of the causal conv over a history buffer (decoding).

  hist_BxSxC holds the conv input of positions 0..pos+T-1 (later slots are never read: the
  conv is causal); rev_2SxC = decode_taps(h). One token (T=1) is a dot product with
  taps[s] = h[pos - s], a contiguous slice of rev (a gather of S x C taps is ~10x slower on
  XLA:CPU): O(S C) per token, no FFT and no recompute of earlier outputs. A longer chunk
  (prefill) is one FFT convolution of the whole buffer, sliced. No skip term.
  """
  S = hist_BxSxC.shape[1]
  if T == 1:
    taps_SxC = jax.lax.dynamic_slice_in_dim(rev_2SxC, S - 1 - pos, S, axis=0)
    y_BxTxC = jnp.einsum('sc,bsc->bc', taps_SxC, f32(hist_BxSxC),
                         precision=jax.lax.Precision.HIGHEST)[:, None]
  else:
    y_BxTxC = jax.lax.dynamic_slice_in_dim(fftconv(f32(hist_BxSxC), rev_2SxC[:S][::-1]), pos,
                                           T, axis=1)
  return y_BxTxC.astype(hist_BxSxC.dtype)
