"""Hyena operator (safari semantics) as an NNX parameter container over hyena_jax.ops."""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hyena_jax import ops

normal = nnx.initializers.normal
_features = functools.lru_cache(maxsize=16)(ops.positional_features)


def dense(d_in: int, d_out: int, rngs: nnx.Rngs, *, std: float = 0.02, use_bias: bool = True,
          dtype=None) -> nnx.Linear:
  """safari's `_init_weights`: every nn.Linear is N(0, std) with a zero bias."""
  return nnx.Linear(d_in, d_out, use_bias=use_bias, kernel_init=normal(std), dtype=dtype,
                    rngs=rngs)


class HyenaFilter(nnx.Module):
  """Implicit filter: positional features -> sine MLP -> exponential decay window.

  Produces C = (order-1)*D channels in safari's '(v o)' layout: channel c = d*(order-1) + o
  belongs to filter o of model channel d. Keeping that layout makes safari weights load
  as plain copies.
  """

  def __init__(self, channels: int, *, l_max: int, emb_dim: int = 3, filter_order: int = 64,
               num_inner_mlps: int = 2, w: float = 1.0, learn_pos_emb: bool = False,
               modulate: bool = True, fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5,
               target: float = 1e-2, shift: float = 0.0, rngs: nnx.Rngs):
    self.l_max, self.emb_dim, self.modulate, self.shift = l_max, emb_dim, modulate, shift
    self.decay_args = (channels, fast_decay_pct, slow_decay_pct, target)
    # A frozen z is a compile-time constant (not state), so the parameter count is what trains.
    z_LxE, _ = _features(l_max, emb_dim)
    self.z = nnx.Param(jnp.asarray(z_LxE)) if learn_pos_emb else None
    widths = [emb_dim] + [filter_order] * (num_inner_mlps + 1)
    self.mlp = nnx.List([dense(a, b, rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.mlp_out = dense(filter_order, channels, rngs, use_bias=False)
    # One omega shared by every sine layer (safari reuses a single Sin module).
    self.omega = nnx.Param(jnp.full((filter_order,), w, jnp.float32))
    self.bias = nnx.Param(normal(1.0)(rngs.params(), (channels,), jnp.float32))

  def __call__(self, L: int) -> jax.Array:
    """The first L taps of every filter, h_LxC (float32)."""
    if L > self.l_max:
      raise ValueError(f'sequence length {L} exceeds the filter l_max {self.l_max}')
    z_const, t_Lx1 = _features(self.l_max, self.emb_dim)
    z_LxE = (self.z[...] if self.z is not None else jnp.asarray(z_const))[:L]
    kernels = [layer.kernel[...] for layer in self.mlp] + [self.mlp_out.kernel[...]]
    biases = [layer.bias[...] for layer in self.mlp] + [None]
    h_LxC = ops.sine_mlp(z_LxE, kernels, biases, self.omega[...])
    if self.modulate:
      h_LxC = ops.modulate(h_LxC, jnp.asarray(t_Lx1[:L]),
                           jnp.asarray(ops.decay_rates(*self.decay_args)), self.shift)
    return h_LxC

  def channels_first(self, L: int) -> jax.Array:
    """__call__(L).T, h_CxL, computed in that layout for the fast path: the last layer is one
    canonical (C x F) @ (F x L) GEMM, and the decay window, a constant, is a product of two
    small exp tables (tap n = a S + b: r^n = r^(a S) r^b) instead of C L exps -- at L=8K
    the transposes and the exp cost as much as an FFT."""
    if L > self.l_max:
      raise ValueError(f'sequence length {L} exceeds the filter l_max {self.l_max}')
    z_const, _ = _features(self.l_max, self.emb_dim)
    x_ExL = (self.z[...] if self.z is not None else jnp.asarray(z_const))[:L].T
    omega_Fx1 = self.omega[...][:, None]
    for layer in self.mlp:
      x_ExL = jnp.sin(omega_Fx1 * (layer.kernel[...].T @ x_ExL + layer.bias[...][:, None]))
    h_CxL = self.mlp_out.kernel[...].T @ x_ExL
    if self.modulate:
      h_CxL = h_CxL * (_decay_window(self.l_max, L, *self.decay_args) + self.shift)
    return h_CxL


@functools.lru_cache(maxsize=16)
def _decay_tables(l_max: int, L: int, *decay_args) -> tuple[np.ndarray, np.ndarray]:
  rate_C = ops.decay_rates(*decay_args).astype(np.float64) / max(l_max - 1, 1)
  S = max(1, math.isqrt(L))
  coarse_CxA = np.exp(-rate_C[:, None] * S * np.arange(-(-L // S))[None])
  fine_CxS = np.exp(-rate_C[:, None] * np.arange(S)[None])
  return coarse_CxA.astype(np.float32), fine_CxS.astype(np.float32)


def _decay_window(l_max: int, L: int, *decay_args) -> jax.Array:
  """exp(-t_n |delta_c|), t_n = n / (l_max - 1), as C x L (see HyenaFilter.channels_first)."""
  coarse_CxA, fine_CxS = _decay_tables(l_max, L, *decay_args)
  C = coarse_CxA.shape[0]
  window = jnp.asarray(coarse_CxA)[:, :, None] * jnp.asarray(fine_CxS)[:, None, :]
  return window.reshape(C, -1)[:, :L]


# channels_first: the fast path (hyena_jax.ops.channels); reference: the same maths in the
# (B, L, D) layout with plain autodiff, kept as the readable spec the fast path is tested against.
IMPLS = ('channels_first', 'reference')


class Modal(nnx.Variable):
  """A long filter distilled to poles and residues (hyena_jax.generate.modal): not trained,
  not a Param, so optimisers and parameter counts never see it."""


class HyenaOperator(nnx.Module):
  """y = out_proj(x_0 * (h * (x_1 * v) + B * (x_1 * v))) for order 2; safari order-N recurrence."""

  def __init__(self, d_model: int, cfg: ml_collections.ConfigDict, *, n_layer: int = 1,
               rngs: nnx.Rngs):
    h = cfg.hyena
    self.d_model, self.order, self.l_max = d_model, h.order, cfg.l_max
    self.dropout_rate, self.fft_size = h.dropout, h.get('fft_size', None)
    self.impl = h.get('impl', 'channels_first')
    if self.impl not in IMPLS:
      raise ValueError(f'model.hyena.impl={self.impl!r} is not one of {IMPLS}')
    width = (h.order + 1) * d_model
    dtype = jnp.dtype(cfg.dtype)
    self.in_proj = dense(d_model, width, rngs, dtype=dtype)
    # PyTorch Conv1d default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = K (depthwise).
    bound = 1.0 / math.sqrt(h.short_filter_order)
    uniform = lambda shape: jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound)
    self.short_kernel = nnx.Param(uniform((h.short_filter_order, width)))
    self.short_bias = nnx.Param(uniform((width,)))
    self.filter = HyenaFilter(
        (h.order - 1) * d_model, l_max=cfg.l_max, emb_dim=h.emb_dim,
        filter_order=h.filter_order, num_inner_mlps=h.num_inner_mlps, w=h.w,
        learn_pos_emb=h.learn_pos_emb, modulate=h.modulate, fast_decay_pct=h.fast_decay_pct,
        slow_decay_pct=h.slow_decay_pct, target=h.decay_target, shift=h.decay_shift, rngs=rngs)
    self.out_proj = dense(d_model, d_model, rngs, std=0.02 / math.sqrt(2 * n_layer), dtype=dtype)
    # Set by hyena_jax.generate.modal.to_modal: Modal (poles, residues), each C x modes.
    self.modal_poles = self.modal_residues = None

  def long_filters(self, L: int) -> jax.Array:
    """h_LxDxO: the implicit filters, or their modal form once distilled."""
    D, N = self.d_model, self.order
    if self.modal_poles is None:
      return self.filter(L).reshape(L, D, N - 1)
    return ops.modal.modal_filter(self.modal_poles[...], self.modal_residues[...],
                                  L).reshape(L, D, N - 1)

  def init_state(self, batch_size: int, dtype=jnp.float32, *, max_len: int) -> dict:
    """Decode cache for max_len positions: the short conv's last K-1 inputs, and every long
    conv's input history with its reversed filter taps (built once here, not per token) -- or,
    for a modal filter, its O(1) recurrent state (any max_len up to l_max)."""
    if max_len > self.l_max:
      raise ValueError(f'decode length {max_len} exceeds l_max {self.l_max}')
    D, N, K = self.d_model, self.order, self.short_kernel.shape[0]
    conv = jnp.zeros((batch_size, K - 1, (N + 1) * D), dtype)
    if self.modal_poles is not None:
      modes = self.modal_poles.shape[-1]
      return {'conv': conv, 'modal': jnp.zeros((N - 1, batch_size, D, modes), jnp.complex64)}
    return {'conv': conv, 'hist': jnp.zeros((N - 1, batch_size, max_len, D), dtype),
            'taps': jnp.moveaxis(ops.decode_taps(self.long_filters(max_len)), -1, 0)}

  def __call__(self, u_BxLxD: jax.Array, state: dict | None = None, *,
               key: jax.Array | None = None, pos: jax.Array | int = 0):
    """y, or (y, new_state) for tokens at positions pos..pos+L-1 given a decode state."""
    B, L, D = u_BxLxD.shape
    if L > self.l_max:
      raise ValueError(f'sequence length {L} exceeds l_max {self.l_max} (safari would silently '
                       'truncate; raise model.l_max instead)')
    N = self.order
    zin_BxLxW = self.in_proj(u_BxLxD)
    left = None if state is None else state['conv']
    z_BxLxW = ops.causal_depthwise_conv(zin_BxLxW, self.short_kernel[...], self.short_bias[...],
                                        left_BxKm1xC=left)
    *xs, v_BxLxD = jnp.split(z_BxLxW, N + 1, axis=-1)
    skip_DxO = self.filter.bias[...].reshape(D, N - 1)
    keys = [None] * (N - 1) if key is None else list(jax.random.split(key, N - 1))
    if state is None and self.impl == 'channels_first':
      return self._forward_channels_first(u_BxLxD, keys)
    if state is None:
      h_LxDxO = self.long_filters(L)
      for o, x_gate in enumerate(reversed(xs[1:])):
        v_BxLxD = ops.dropout(v_BxLxD * x_gate, self.dropout_rate, keys[o])
        v_BxLxD = ops.fftconv(v_BxLxD, h_LxDxO[..., o], skip_DxO[:, o], fft_size=self.fft_size)
      return self.out_proj(v_BxLxD * xs[0])
    tail = jnp.concatenate([state['conv'], zin_BxLxW.astype(state['conv'].dtype)], axis=1)
    new_state = {'conv': tail[:, tail.shape[1] - state['conv'].shape[1]:]}
    carried = []
    for o, x_gate in enumerate(reversed(xs[1:])):
      v_BxLxD = v_BxLxD * x_gate
      if 'modal' in state:
        y_BxLxD, x_BxDxM = self._modal_conv(v_BxLxD, state['modal'][o], o)
        carried.append(x_BxDxM)
      else:
        hist_BxSxD = jax.lax.dynamic_update_slice_in_dim(
            state['hist'][o], v_BxLxD.astype(state['hist'].dtype), pos, axis=1)
        carried.append(hist_BxSxD)
        y_BxLxD = ops.cached_causal_conv(hist_BxSxD, state['taps'][o], pos, L)
      v_BxLxD = (ops.f32(y_BxLxD) + ops.f32(v_BxLxD) * skip_DxO[None, None, :, o]
                 ).astype(u_BxLxD.dtype)
    if 'modal' in state:
      new_state['modal'] = jnp.stack(carried)
    else:
      new_state.update(hist=jnp.stack(carried), taps=state['taps'])
    return self.out_proj(v_BxLxD * xs[0]), new_state

  def _forward_channels_first(self, u_BxLxD, keys):
    """The training/prefill forward in the C x B x L layout (see hyena_jax.ops.channels)."""
    L, D, N = u_BxLxD.shape[1], self.d_model, self.order
    dt = self.in_proj.dtype or u_BxLxD.dtype
    # N+1 groups, each through its own slice of the short conv: no C x B x L concatenation of
    # their gradients anywhere in the backward (see ops.channels.dense_to_channels).
    zs = ops.channels.dense_to_channels(u_BxLxD.astype(dt), self.in_proj.kernel[...].astype(dt),
                                        self.in_proj.bias[...], N + 1)
    ws = jnp.split(self.short_kernel[...], N + 1, axis=1)
    bs = jnp.split(self.short_bias[...], N + 1)
    *xs, v_DxBxL = [ops.channels.causal_depthwise_conv_cf(z, w, b) for z, w, b in zip(zs, ws, bs)]
    if self.modal_poles is None:
      h_DxOxL = self.filter.channels_first(L).reshape(D, N - 1, L)
    else:
      h_DxOxL = jnp.transpose(self.long_filters(L), (1, 2, 0))
    skip_DxO = self.filter.bias[...].reshape(D, N - 1)
    for o, x_gate in enumerate(reversed(xs[1:])):
      v_DxBxL = ops.dropout(v_DxBxL * x_gate, self.dropout_rate, keys[o])
      v_DxBxL = ops.channels.fftconv_cf(v_DxBxL, h_DxOxL[:, o], skip_DxO[:, o],
                                        fft_size=self.fft_size)
    return ops.channels.dense_from_channels(
        v_DxBxL * xs[0], self.out_proj.kernel[...].astype(dt), self.out_proj.bias[...])

  def _modal_conv(self, v_BxLxD, x_BxDxM, o: int):
    """Filter o's convolution as the modal recurrence from state x (no skip term)."""
    D, N = self.d_model, self.order
    poles_DxM = self.modal_poles[...].reshape(D, N - 1, -1)[:, o]
    residues_DxM = self.modal_residues[...].reshape(D, N - 1, -1)[:, o]
    if v_BxLxD.shape[1] == 1:
      y_BxD, x_BxDxM = ops.modal.modal_step(x_BxDxM, v_BxLxD[:, 0], poles_DxM, residues_DxM)
      return y_BxD[:, None], x_BxDxM
    return ops.modal.modal_scan(v_BxLxD, poles_DxM, residues_DxM, x_BxDxM)
