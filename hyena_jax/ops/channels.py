"""Channels-first (C x B x L) kernels for the Hyena operator's fast path.

Why this layout: the FFT runs over the minor axis, so with L minor (C x B x L) the long
convolution, the short convolution and the gates need no transposes, forward or backward.
What remains is getting in and out of the (B, L, D) model layout, and that is where XLA:CPU
is slow if left alone: it folds the transposes into the projections' dots, then materialises
them fused with their producers (a short-conv backward of slices and pads), and a fused
slice+transpose runs ~10x slower than a plain one (0.7 s of a 1.9 s fwd+bwd at L=8K, D=768).
The two projections below therefore have hand-written VJPs: the in-projection's dots are
canonical (M x K) @ (K x N) GEMMs around transposes of plain arrays, and the out-projection's
dots take their operands' layouts as they come (A^T B, A B^T) so that no activation is
transposed at all (optimization barriers do not survive to XLA:CPU's fusion passes, so they
cannot keep a transpose from fusing with its neighbours). The FFT convolution and the short
convolution have hand-written VJPs too (see each). benchmarks/speed_vs_torch.py measures the
result against safari and benchmarks/profile_step.py shows where the time goes (README, "Speed
against the PyTorch peers").
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hyena_jax.ops.misc import f32

_barrier = jax.lax.optimization_barrier


def _rows(x_BxLxD: jax.Array) -> jax.Array:
  B, L, D = x_BxLxD.shape
  return x_BxLxD.reshape(B * L, D)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def dense_to_channels(u_BxLxD: jax.Array, w_DxC: jax.Array, b_C: jax.Array, groups: int = 1):
  """z_CxBxL = (u w + b) transposed to channels-first, in u's dtype (the caller casts).

  groups > 1 returns the C channels as that many (C/groups, B, L) arrays (Hyena's x_1..x_N, v):
  the backward then takes their gradients as they come, with one GEMM each, instead of
  concatenating them first (a copy of the whole C x B x L gradient: 6% of the step at L=8K).
  """
  return _to_fwd(u_BxLxD, w_DxC, b_C, groups)[0]


def _to_fwd(u_BxLxD, w_DxC, b_C, groups):
  B, L, _ = u_BxLxD.shape
  uT_DxN = _barrier(_rows(u_BxLxD).T)
  z_CxN = (w_DxC.T @ uT_DxN).astype(u_BxLxD.dtype) + b_C.astype(u_BxLxD.dtype)[:, None]
  z_CxBxL = z_CxN.reshape(-1, B, L)
  out = z_CxBxL if groups == 1 else tuple(jnp.split(z_CxBxL, groups, axis=0))
  return out, (u_BxLxD, w_DxC, b_C)


def _to_bwd(groups, res, dz):
  u_BxLxD, w_DxC, b_C = res
  B, L, D = u_BxLxD.shape
  dzs = (dz,) if groups == 1 else dz
  u_NxD = _rows(u_BxLxD)
  w_parts = jnp.split(w_DxC, groups, axis=1)
  duT_DxN, dwT, db = None, [], []
  for dz_CxBxL, w_part in zip(dzs, w_parts):
    dz_CxN = _barrier(dz_CxBxL.reshape(-1, B * L))
    dwT.append(dz_CxN @ u_NxD)
    part = w_part.astype(dz_CxN.dtype) @ dz_CxN
    duT_DxN = part if duT_DxN is None else duT_DxN + part
    db.append(jnp.sum(f32(dz_CxN), axis=1))
  du_BxLxD = _barrier(duT_DxN).T.reshape(B, L, D)
  return (du_BxLxD.astype(u_BxLxD.dtype), jnp.concatenate(dwT).T.astype(w_DxC.dtype),
          jnp.concatenate(db).astype(b_C.dtype))


dense_to_channels.defvjp(_to_fwd, _to_bwd)


@jax.custom_vjp
def dense_from_channels(y_CxBxL: jax.Array, w_CxE: jax.Array, b_E: jax.Array) -> jax.Array:
  """out_BxLxE = y w + b from channels-first y, in y's dtype.

  Neither pass transposes an activation: the forward contracts y's major axis in the dot
  itself (an A^T B product) and the backward takes dy as w dout^T (A B^T). With an explicit
  E x N output transposed back (or dout transposed for a canonical GEMM), XLA:CPU fused the
  transposes into their neighbours' elementwise ops (the loss gradient, the bias) as slow
  strided loops (benchmarks/speed_vs_torch.py on a 2-core Xeon with AMX, where these dot forms
  run as fast as the canonical one: 1.36x -> 1.42x safari's speed at L=8K, 1.87x -> 1.97x at
  32K, the same within noise at 1K-2K; README, "What each change bought").
  """
  C, B, L = y_CxBxL.shape
  out_NxE = jnp.einsum('cn,ce->ne', y_CxBxL.reshape(C, B * L), w_CxE).astype(y_CxBxL.dtype)
  return out_NxE.reshape(B, L, -1) + b_E.astype(y_CxBxL.dtype)[None, None]


def _from_fwd(y, w, b):
  return dense_from_channels(y, w, b), (y, w, b)


def _from_bwd(res, dout_BxLxE):
  y_CxBxL, w_CxE, b_E = res
  C, B, L = y_CxBxL.shape
  dout_NxE = _rows(dout_BxLxE)
  dy_CxN = jnp.einsum('ce,ne->cn', w_CxE.astype(dout_NxE.dtype), dout_NxE)
  dw_CxE = y_CxBxL.reshape(C, B * L) @ dout_NxE.astype(y_CxBxL.dtype)
  # A major-axis sum of a 2-D array: one vectorised pass (not the slow two-axis reduce).
  return (dy_CxN.reshape(C, B, L).astype(y_CxBxL.dtype), dw_CxE.astype(w_CxE.dtype),
          jnp.sum(f32(dout_NxE), axis=0).astype(b_E.dtype))


dense_from_channels.defvjp(_from_fwd, _from_bwd)


def _flat(x_CxBxL: jax.Array) -> jax.Array:
  return x_CxBxL.reshape(x_CxBxL.shape[0], -1)


@jax.custom_vjp
def causal_depthwise_conv_cf(x_CxBxL: jax.Array, w_KxC: jax.Array, b_C: jax.Array
                             ) -> jax.Array:
  """ops.causal_depthwise_conv on channels-first input: y_t = sum_k w_k x_{t-(K-1)+k} + b.

  Hand-written VJP: autodiff reduces the tap gradients over (B, L), two axes of a 3-D array,
  which XLA:CPU's YNNPACK reduce fusions run ~20x slower than one minor axis of a 2-D view
  (0.35 s of a 0.9 s fwd+bwd at L=4K without --xla_cpu_experimental_ynn_fusion_type=-reduce).
  """
  K, L = w_KxC.shape[0], x_CxBxL.shape[-1]
  xp = jnp.pad(x_CxBxL, ((0, 0), (0, 0), (K - 1, 0)))
  w = w_KxC.astype(x_CxBxL.dtype)
  y = xp[..., K - 1:] * w[K - 1][:, None, None]
  for k in range(K - 1):
    y = y + xp[..., k:k + L] * w[k][:, None, None]
  return y + b_C.astype(x_CxBxL.dtype)[:, None, None]


def _conv_fwd(x, w, b):
  return causal_depthwise_conv_cf(x, w, b), (x, w, b)


def _conv_bwd(res, dy_CxBxL):
  x_CxBxL, w_KxC, b_C = res
  K, L = w_KxC.shape[0], x_CxBxL.shape[-1]
  xp = jnp.pad(x_CxBxL, ((0, 0), (0, 0), (K - 1, 0)))
  dyp = jnp.pad(dy_CxBxL, ((0, 0), (0, 0), (0, K - 1)))
  w = w_KxC.astype(dy_CxBxL.dtype)
  # x_s feeds y_{s+(K-1)-k} through tap k: the transposed (anti-causal) convolution.
  dx = sum(dyp[..., K - 1 - k:K - 1 - k + L] * w[k][:, None, None] for k in range(K))
  dy_CxN = f32(_flat(dy_CxBxL))
  dw_KxC = jnp.stack([jnp.sum(dy_CxN * f32(_flat(xp[..., k:k + L])), axis=-1)
                      for k in range(K)])
  return (dx.astype(x_CxBxL.dtype), dw_KxC.astype(w_KxC.dtype),
          jnp.sum(dy_CxN, axis=-1).astype(b_C.dtype))


causal_depthwise_conv_cf.defvjp(_conv_fwd, _conv_bwd)


# Short, wide batches run the long convolution as a Toeplitz matmul instead of FFTs: building
# the C x L x L Toeplitz (and its VJP) costs ~15 ns per element whatever the batch, the matmul
# little per row, the FFT path ~45 ns per (c, b, t). So direct wins for L <= 128 once B >= L/2
# (measured fwd+bwd on 2 cores: C=256, B=128, L=64 direct 38 ms vs FFT 97; C=768, B=1, L=64
# 39 ms vs 1.8; C=768, B=32, L=128 225 vs 167).
DIRECT_MAX_LEN = 128


def use_direct(B: int, L: int) -> bool:
  """Whether fftconv_cf's automatic choice is the Toeplitz matmul for a (C, B, L) input."""
  return L <= DIRECT_MAX_LEN and 2 * B >= L


def toeplitz_cf(h_CxL: jax.Array) -> jax.Array:
  """T_CxLxL[c, s, t] = h[c, t - s] for t >= s, else 0, without a gather.

  Tiling r = [h, 0 (L-1)] L times and reading it as rows of 2L-2 shifts row s by s places;
  its VJP is reshapes, slices and adds (a gather's would be a scatter-add).
  """
  C, L = h_CxL.shape
  if L == 1:
    return h_CxL[:, :, None]
  r_CxR = jnp.pad(h_CxL, ((0, 0), (0, L - 1)))
  flat = jnp.tile(r_CxR, (1, L))[:, :L * (2 * L - 2)]
  return flat.reshape(C, L, 2 * L - 2)[:, :, :L]


def fftconv_cf(u_CxBxL: jax.Array, h_CxL: jax.Array, skip_C: jax.Array | None = None,
               fft_size: int | None = None, *, direct: bool | None = None) -> jax.Array:
  """ops.fftconv on channels-first input and filter (FFT over the minor axis), float32 inside.

  direct: True computes the same function as a Toeplitz matmul, False by FFTs of fft_size
  (default 2L); None picks by use_direct(B, L) unless fft_size is given.
  """
  L = u_CxBxL.shape[-1]
  if h_CxL.shape[-1] != L:
    raise ValueError(f'filter length {h_CxL.shape[-1]} != sequence length {L}')
  if direct is None:
    direct = fft_size is None and use_direct(u_CxBxL.shape[1], L)
  if direct:
    u32 = f32(u_CxBxL)
    y = jnp.einsum('cbs,cst->cbt', u32, toeplitz_cf(f32(h_CxL)),
                   precision=jax.lax.Precision.HIGHEST)
    if skip_C is not None:
      y = y + u32 * f32(skip_C)[:, None, None]
    return y.astype(u_CxBxL.dtype)
  n = 2 * L if fft_size is None else fft_size
  if n < 2 * L - 1:
    raise ValueError(f'fft_size {n} < 2L-1 = {2 * L - 1} would wrap the convolution around')
  if skip_C is None:
    skip_C = jnp.zeros(h_CxL.shape[0], h_CxL.dtype)
  return _fftconv(u_CxBxL, h_CxL, skip_C, n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _fftconv(u_CxBxL, h_CxL, skip_C, n: int):
  return _fftconv_fwd(u_CxBxL, h_CxL, skip_C, n)[0]


def _fftconv_fwd(u_CxBxL, h_CxL, skip_C, n):
  """y = irfft(U H)[:L] + skip u; the spectra are the residuals (no FFT is redone backward)."""
  L = u_CxBxL.shape[-1]
  uf_CxBxF = jnp.fft.rfft(f32(u_CxBxL), n=n, axis=-1)
  hf_CxF = jnp.fft.rfft(f32(h_CxL), n=n, axis=-1)
  y = jnp.fft.irfft(uf_CxBxF * hf_CxF[:, None], n=n, axis=-1)[..., :L]
  y = y + f32(u_CxBxL) * f32(skip_C)[:, None, None]
  zeros = lambda a: jnp.zeros((0,), a.dtype)  # Carry the primal dtypes into the backward.
  return y.astype(u_CxBxL.dtype), (uf_CxBxF, hf_CxF, skip_C, zeros(u_CxBxL), zeros(h_CxL))


def _fftconv_bwd(n, res, dy_CxBxL):
  """Both gradients are correlations with dy, so three FFTs: rfft(dy) and two irffts. With
  every signal zero past L and n >= 2L-1 no lag below L wraps; and the skip's gradient,
  sum_t dy_t u_t, is the filter gradient's lag 0, so it costs nothing more."""
  uf_CxBxF, hf_CxF, skip_C, u0, h0 = res
  L = dy_CxBxL.shape[-1]
  dy32 = f32(dy_CxBxL)
  dyf_CxBxF = jnp.fft.rfft(dy32, n=n, axis=-1)
  du = jnp.fft.irfft(dyf_CxBxF * jnp.conj(hf_CxF)[:, None], n=n, axis=-1)[..., :L]
  du = du + dy32 * f32(skip_C)[:, None, None]
  cross_CxF = jnp.sum(dyf_CxBxF * jnp.conj(uf_CxBxF), axis=1)
  dh_CxL = jnp.fft.irfft(cross_CxF, n=n, axis=-1)[:, :L]
  return du.astype(u0.dtype), dh_CxL.astype(h0.dtype), dh_CxL[:, 0].astype(skip_C.dtype)


_fftconv.defvjp(_fftconv_fwd, _fftconv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def transpose_plain(x: jax.Array, perm: tuple[int, ...]) -> jax.Array:
  """jnp.transpose(x, perm) kept a standalone copy, forward and backward.

  The barriers stop XLA:CPU from fusing the transpose with a neighbouring slice or concatenate
  (the slow fused path described above), e.g. q/k/v split from one fused projection.
  """
  return _barrier(jnp.transpose(_barrier(x), perm))


def _transpose_fwd(x, perm):
  return transpose_plain(x, perm), None


def _transpose_bwd(perm, _, g):
  inverse = tuple(int(i) for i in np.argsort(perm))
  return (transpose_plain(g, inverse),)


transpose_plain.defvjp(_transpose_fwd, _transpose_bwd)


@jax.custom_vjp
def logits_from_table(x_BxLxD: jax.Array, table_VxD: jax.Array) -> jax.Array:
  """x table^T (an LM head over its embedding table) with the same canonical-dot VJP.

  Plain autodiff takes the table's gradient as dlogits^T x, and XLA:CPU then transposes the
  N x V logit gradient (the largest array of a small LM's step: 328 MB at 8K tokens x 10K
  vocab) in a fused loop; here it is (x^T dlogits)^T, which transposes only D-wide arrays.
  """
  B, L, _ = x_BxLxD.shape
  return (_rows(x_BxLxD) @ _barrier(table_VxD.T)).reshape(B, L, -1)


def _logits_fwd(x, table):
  return logits_from_table(x, table), (x, table)


def _logits_bwd(res, dlogits_BxLxV):
  x_BxLxD, table_VxD = res
  # Materialised once: fused into both dots below, the softmax backward ran twice, slowly.
  dl_NxV = _barrier(_rows(dlogits_BxLxV))
  dx_NxD = dl_NxV @ table_VxD.astype(dl_NxV.dtype)
  dtableT_DxV = _barrier(_rows(x_BxLxD).T).astype(dl_NxV.dtype) @ dl_NxV
  return (dx_NxD.reshape(x_BxLxD.shape).astype(x_BxLxD.dtype),
          _barrier(dtableT_DxV).T.astype(table_VxD.dtype))


logits_from_table.defvjp(_logits_fwd, _logits_bwd)
