"""Modal distillation of long convolution filters (Laughing Hyena, Massaroli et al. 2023,
arXiv 2310.18780): h[t] ~= Re(sum_{n<N} R_n lambda_n^t) per channel, |lambda_n| < 1.

Why: this form turns the O(L)-per-token causal convolution y_t = sum_{s<=t} h[t-s] u_s into
an O(N)-per-token recurrence x_n <- lambda_n x_n + u_t, y_t = Re(sum_n R_n x_n), because then
x_n[t] = sum_{s<=t} lambda_n^{t-s} u_s.

Real outputs: each of the N complex modes stands for a conjugate pair (Re adds the conjugate
mode), so order N = N complex64 states = 2N real states; a real pole is a mode with angle 0.

Fitting (`fit_modal`), every channel on its own, on the unit-norm filter:
  1. init 'hankel' (default, host-side float64 numpy): rank-2N Kung / ERA realisations of two
     Hankel matrices H[i, j] = h[i + j] (randomised SVD via FFT correlations): the finite window
     (rows + cols = L; near exact for smooth filters, may give |lambda| > 1) and the zero-padded
     L x L one (balanced truncation of the FIR filter: stable). Per channel the better one is
     kept: its N upper-half-plane poles with the most energy, radii clipped below 1.
  2. Levenberg-Marquardt on the poles lambda = exp(-s + i theta), s >= 1e-6 (|lambda| < 1),
     residues eliminated by ridge least squares (variable projection); float64 jax, vmapped.
  3. residues re-solved for the poles rounded to complex64.
"""

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np

_MIN_DECAY = 1e-6  # -log|lambda| >= 1e-6: |lambda| < 1 stays true after rounding to float32
_MAX_RADIUS = math.exp(-_MIN_DECAY)


# ----------------------------------------------------------------------------- modal form
def modal_filter(poles_CxN: jax.Array, residues_CxN: jax.Array, L: int) -> jax.Array:
  """Impulse response h[t] = Re(sum_n R_n lambda_n^t), LxC float32 (for fftconv), parallel
  in t as exp(t log lambda); its float32 error (~ t theta 2^-24) is what _ridge budgets for."""
  t_Lx1x1 = jnp.arange(L, dtype=jnp.float32)[:, None, None]
  v_LxCxN = jnp.exp(t_Lx1x1 * jnp.log(poles_CxN.astype(jnp.complex64))[None])
  return jnp.real(jnp.sum(v_LxCxN * residues_CxN.astype(jnp.complex64)[None], -1))


def modal_init_state(batch: int, C: int, N: int) -> jax.Array:
  """Zero state, BxCxN complex64: the recurrence before any token has been seen."""
  return jnp.zeros((batch, C, N), jnp.complex64)


def modal_step(state_BxCxN: jax.Array, u_BxC: jax.Array, poles_CxN: jax.Array,
               residues_CxN: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One token: x <- lambda x + u, y = Re(sum_n R_n x_n). Returns (y_BxC float32, state)."""
  state_BxCxN = (poles_CxN.astype(jnp.complex64)[None] * state_BxCxN
                 + u_BxC.astype(jnp.float32)[..., None])
  y_BxC = jnp.real(jnp.sum(state_BxCxN * residues_CxN.astype(jnp.complex64)[None], -1))
  return y_BxC, state_BxCxN


def modal_scan(u_BxLxC: jax.Array, poles_CxN: jax.Array, residues_CxN: jax.Array,
               state0_BxCxN: jax.Array | None = None, *, associative: bool = False
               ) -> tuple[jax.Array, jax.Array]:
  """Prefill: modal_step over the sequence. Returns (y_BxLxC float32, final state).

  Equals the causal convolution of u with modal_filter(poles, residues, L), plus the response
  to state0 if given (so a sequence can be run in pieces). associative=False: a lax.scan
  (O(B C N) memory); True: an associative scan, depth log L, but it holds BxLxCxN states."""
  (B, L, C), N = u_BxLxC.shape, poles_CxN.shape[-1]
  poles_CxN, residues_CxN = poles_CxN.astype(jnp.complex64), residues_CxN.astype(jnp.complex64)
  if state0_BxCxN is None:
    state0_BxCxN = modal_init_state(B, C, N)
  if not associative:
    step = lambda x, u: modal_step(x, u, poles_CxN, residues_CxN)[::-1]
    final_BxCxN, y_LxBxC = jax.lax.scan(step, state0_BxCxN, jnp.swapaxes(u_BxLxC, 0, 1))
    return jnp.swapaxes(y_LxBxC, 0, 1), final_BxCxN
  # x_t = lambda x_{t-1} + b_t with b_0 = lambda x_{-1} + u_0: compose affine maps (a, b).
  b_BxLxCxN = jnp.broadcast_to(u_BxLxC.astype(jnp.complex64)[..., None], (B, L, C, N))
  b_BxLxCxN = b_BxLxCxN.at[:, 0].add(poles_CxN[None] * state0_BxCxN)
  a_BxLxCxN = jnp.broadcast_to(poles_CxN[None, None], b_BxLxCxN.shape)
  combine = lambda l, r: (l[0] * r[0], r[0] * l[1] + r[1])
  _, x_BxLxCxN = jax.lax.associative_scan(combine, (a_BxLxCxN, b_BxLxCxN), axis=1)
  y_BxLxC = jnp.real(jnp.sum(x_BxLxCxN * residues_CxN[None, None], -1))
  return y_BxLxC, x_BxLxCxN[:, -1]


def relative_error(h_LxC: jax.Array, poles_CxN: jax.Array, residues_CxN: jax.Array):
  """||h - h_hat|| / ||h|| per channel (C,), with h_hat = modal_filter(...) in float32."""
  h_LxC = jnp.asarray(h_LxC, jnp.float32)
  err_LxC = h_LxC - modal_filter(poles_CxN, residues_CxN, h_LxC.shape[0])
  norm_C = jnp.linalg.norm(h_LxC, axis=0)
  return jnp.linalg.norm(err_LxC, axis=0) / jnp.maximum(norm_C, jnp.finfo(jnp.float32).tiny)


# ----------------------------------------------------------------------------- init (float64)
def _ridge(L: int) -> float:
  """Ridge on each mode's norm ||R lambda^t|| (unit-norm filter): ~ the squared float32 rounding
  of the phase t theta <= pi L 2^-24, since large nearly cancelling modes would fit better in
  float64 but be noise in float32. It also keeps the normal equations well conditioned."""
  return max((0.5 * L * 2.0 ** -24) ** 2, 1e-12)


def _lstsq_residues(h_CxL: np.ndarray, poles_CxN: np.ndarray) -> np.ndarray:
  """Best residues for given poles: h = Re(V R) = Re(V) Re(R) - Im(V) Im(R), a real least
  squares problem in 2N unknowns, with a ridge on each mode's norm ||R lambda^t|| (_ridge)."""
  (C, L), N = h_CxL.shape, poles_CxN.shape[1]
  res = np.empty((C, N), np.complex128)
  for c in range(C):
    v_LxN = np.power(poles_CxN[c][None], np.arange(L)[:, None])
    norm_N = np.linalg.norm(v_LxN, axis=0)  # >= 1 (the t = 0 term)
    a_Lx2N = np.concatenate([v_LxN.real, -v_LxN.imag], -1) / np.tile(norm_N, 2)[None]
    gram = a_Lx2N.T @ a_Lx2N + _ridge(L) * np.eye(2 * N)
    sol = np.linalg.solve(gram, a_Lx2N.T @ h_CxL[c])
    res[c] = (sol[:N] + 1j * sol[N:]) / norm_N
  return res


def _impulse_error(h_CxL: np.ndarray, poles_CxN: np.ndarray, res_CxN: np.ndarray) -> np.ndarray:
  err = [np.linalg.norm(np.real(np.power(p[None], np.arange(h.size)[:, None]) @ r) - h)
         for h, p, r in zip(h_CxL, poles_CxN, res_CxN)]
  return np.asarray(err) / np.maximum(np.linalg.norm(h_CxL, axis=1), 1e-300)


def _clip_radius(poles: np.ndarray) -> np.ndarray:
  """Radii into [1e-4, 1 - 1e-6]: stable, log|lambda| finite (all-zero channel: pole 0)."""
  r = np.abs(poles)
  return np.where(r > 0, poles / np.maximum(r, 1e-300), 1.0) * np.clip(r, 1e-4, _MAX_RADIUS)


def _hankel_apply(hf_CxF: np.ndarray, x_CxJxK: np.ndarray, rows: int) -> np.ndarray:
  """(H x)_i = sum_{j<J} h[i + j] x_j for i < rows (h zero past L), as an FFT correlation:
  the Hankel matrix is never built (C x L x L would not fit for long filters)."""
  F, J = 2 * (hf_CxF.shape[1] - 1), x_CxJxK.shape[1]
  xf = np.fft.rfft(x_CxJxK[:, ::-1], n=F, axis=1)
  return np.fft.irfft(hf_CxF[:, :, None] * xf, n=F, axis=1)[:, J - 1:J - 1 + rows]


def era_poles(h_CxL: np.ndarray, k: int, rows: int, cols: int, *, power_iters: int = 3,
              seed: int = 0) -> np.ndarray:
  """Eigenvalues (C x k) of the rank-k ERA / Kung realisation A = S^-1/2 U^T H1 V S^-1/2 of the
  rows x cols Hankel matrix H = U S V^T (H1: h shifted by one), by a randomised SVD.
  rows = cols = L (h zero-padded): balanced truncation of the FIR filter, stable, but it also
  spends modes on the cut to zero at t = L. rows + cols = L only looks inside the window."""
  C, L = h_CxL.shape
  hf = np.fft.rfft(h_CxL, n=2 * L, axis=1)
  h1f = np.fft.rfft(np.pad(h_CxL[:, 1:], ((0, 0), (0, 1))), n=2 * L, axis=1)
  m = min(k + 10, rows, cols)
  q_CxRxM = np.linalg.qr(_hankel_apply(
      hf, np.random.default_rng(seed).standard_normal((C, cols, m)), rows))[0]
  for _ in range(power_iters):  # subspace iteration: H H^T sharpens the top-k subspace
    q_CxRxM = np.linalg.qr(_hankel_apply(hf, _hankel_apply(hf, q_CxRxM, cols), rows))[0]
  bt_CxJxM = _hankel_apply(hf, q_CxRxM, cols)  # H^T Q (H^T is the same correlation)
  u_CxMxM, s_CxM, vt_CxMxJ = np.linalg.svd(np.swapaxes(bt_CxJxM, 1, 2), full_matrices=False)
  k = min(k, m)
  u_CxRxk = q_CxRxM @ u_CxMxM[:, :, :k]
  v_CxJxk = np.swapaxes(vt_CxMxJ[:, :k], 1, 2)
  isq_Cxk = 1.0 / np.sqrt(np.maximum(s_CxM[:, :k], 1e-300))
  a_Cxkxk = np.swapaxes(u_CxRxk, 1, 2) @ _hankel_apply(h1f, v_CxJxk, rows)
  return np.linalg.eigvals(a_Cxkxk * isq_Cxk[:, :, None] * isq_Cxk[:, None, :])


def _select_modes(h_L: np.ndarray, lam: np.ndarray, order: int) -> np.ndarray:
  """Of a real realisation's poles (closed under conjugation), the N upper-half-plane ones
  whose least-squares share of h has the most energy sum_t |R lambda^t|^2."""
  lam = _clip_radius(lam[lam.imag >= 0])
  lam = np.concatenate([lam, grid_init(1, max(order - lam.size, 0), h_L.size)[0]])  # tiny L
  res = _lstsq_residues(h_L[None], lam[None])[0]
  r2 = np.abs(lam) ** 2
  energy = np.abs(res) ** 2 * (1 - r2 ** h_L.size) / np.maximum(1 - r2, 1e-12)
  return lam[np.argsort(-energy)[:order]]


def hankel_init(h_CxL: np.ndarray, order: int, max_cols: int = 256, chunk: int = 32):
  """Per channel, the better (after least-squares residues) of two rank-2N ERA pole sets:
  finite-window (rows + cols = L, cols <= max_cols) and FIR balanced truncation (L x L)."""
  C, L = h_CxL.shape
  cols = min(L // 2, max_cols)
  best, best_err = np.empty((C, order), np.complex128), np.full(C, np.inf)
  for rows_, cols_ in [(L - cols, cols), (L, L)]:
    for lo in range(0, C, chunk):
      h = h_CxL[lo:lo + chunk]
      lam_Cxk = era_poles(h, 2 * order, rows_, cols_)
      poles = np.stack([_select_modes(x, lam, order) for x, lam in zip(h, lam_Cxk)])
      err = _impulse_error(h, poles, _lstsq_residues(h, poles))
      better = err < best_err[lo:lo + chunk]
      best[lo:lo + chunk][better], best_err[lo:lo + chunk][better] = poles[better], err[better]
  return best


def grid_init(C: int, order: int, L: int) -> np.ndarray:
  """Poles spread over angles (0, pi) and three decay lengths (10%, 30%, 100% of L), CxN."""
  n = np.arange(order)
  radius = np.exp(math.log(1e-2) / (np.array([0.1, 0.3, 1.0])[n % 3] * L))  # r^reach = 1e-2
  return np.broadcast_to(radius * np.exp(1j * math.pi * (n + 0.5) / order), (C, order)).copy()


# ----------------------------------------------------------------------------- refine (jax)
def _spd_solve(m_nxn, b_nxk):
  """M^-1 B by Gauss-Jordan without pivoting (fine for SPD M) in plain XLA ops: CPU LAPACK
  calls per channel and step hand off to OpenBLAS threads, ~5x slower on a busy machine."""
  def body(j, mb):
    m, b = mb
    row_m, row_b = m[j] / m[j, j], b[j] / m[j, j]
    col_n = m[:, j].at[j].set(0.0)
    return ((m - col_n[:, None] * row_m[None]).at[j].set(row_m),
            (b - col_n[:, None] * row_b[None]).at[j].set(row_b))
  return jax.lax.fori_loop(0, m_nxn.shape[0], body, (m_nxn, b_nxk))[1]


def _varpro(h_L, s_N, theta_N):
  """Residues eliminated by ridge least squares (variable projection) for the poles
  exp(-s + i theta), by 2N x 2N normal equations (the ridge keeps them well conditioned).
  Returns (squared error, residual, lambda^t, residues, normalised design a, a^T a + ridge)."""
  N = s_N.shape[0]
  t_Lx1 = jnp.arange(h_L.shape[0], dtype=h_L.dtype)[:, None]
  v_LxN = jnp.exp(t_Lx1 * (-s_N + 1j * theta_N)[None])
  norm_N = jnp.linalg.norm(v_LxN, axis=0)  # >= 1 (the t = 0 term)
  a_Lx2N = jnp.concatenate([v_LxN.real, -v_LxN.imag], -1) / jnp.tile(norm_N, 2)[None]
  gram = a_Lx2N.T @ a_Lx2N + _ridge(h_L.shape[0]) * jnp.eye(2 * N, dtype=h_L.dtype)
  c_2N = _spd_solve(gram, (a_Lx2N.T @ h_L)[:, None])[:, 0]
  r_L = h_L - a_Lx2N @ c_2N
  return r_L @ r_L, r_L, v_LxN, (c_2N[:N] + 1j * c_2N[N:]) / norm_N, a_Lx2N, gram


def _lm_channel(h_L, s_N, theta_N, steps: int, damping: float):
  """Levenberg-Marquardt on (s, theta) of one channel, Kaufman's VarPro Jacobian. Not Adam: only
  2N parameters remain, so Gauss-Newton steps are cheap, and in float64 they keep improving
  where float32 Adam stalled (L = 128, order 32: 10x lower error). Never raises the error."""
  t_Lx1, N = jnp.arange(h_L.shape[0], dtype=h_L.dtype)[:, None], s_N.shape[0]

  def body(_, carry):
    s, th, mu, (f, r, v, res, a, gram) = carry
    d_LxN = t_Lx1 * v * res[None]  # d h_hat / d s = Re(-d), d h_hat / d theta = Re(i d)
    jac_Lx2N = jnp.concatenate([-d_LxN.real, -d_LxN.imag], -1)
    jac_Lx2N = jac_Lx2N - a @ _spd_solve(gram, a.T @ jac_Lx2N)  # Kaufman: (I - P) dA c
    g_2N, hess = jac_Lx2N.T @ r, jac_Lx2N.T @ jac_Lx2N
    diag_2N = jnp.diag(hess) + 1e-12 * jnp.trace(hess) + 1e-300
    step = _spd_solve(hess + jnp.diag(mu * diag_2N), g_2N[:, None])[:, 0]
    s2, th2 = jnp.maximum(s + step[:N], _MIN_DECAY), th + step[N:]
    new = _varpro(h_L, s2, th2)
    ok = new[0] < f
    pick = lambda a, b: jax.tree.map(lambda x, y: jnp.where(ok, x, y), a, b)
    return pick(s2, s), pick(th2, th), jnp.where(ok, mu / 3, mu * 4), pick(new, carry[3])

  carry = (s_N, theta_N, jnp.asarray(damping, h_L.dtype), _varpro(h_L, s_N, theta_N))
  s_N, theta_N, _, _ = jax.lax.fori_loop(0, steps, body, carry)
  return s_N, theta_N


_lm = jax.jit(jax.vmap(_lm_channel, in_axes=(0, 0, 0, None, None)), static_argnums=(3,))


def _one_blas_thread():
  """The host-side fit makes many small BLAS/LAPACK calls: threads gain nothing there, and on a
  busy CPU OpenBLAS's thread hand-offs made it 10x slower. threadpoolctl is optional."""
  try:
    from threadpoolctl import threadpool_limits
  except ImportError:
    return contextlib.nullcontext()
  return threadpool_limits(1, user_api='blas')


def fit_modal(h_LxC, order: int, *, steps: int = 50, damping: float = 1e-3,
              init: str = 'hankel', chunk: int = 128):
  """Fit h[t] ~= Re(sum_n R_n lambda_n^t), t < L, per channel. Returns (poles_CxN complex64,
  residues_CxN complex64, info): info['rel_err'] (C,) = ||h - modal_filter(...)|| / ||h|| in
  float32, its 'max_rel_err' / 'mean_rel_err', 'init_rel_err' (C,) before refinement, 'order'.
  steps: LM iterations (0 keeps the init); damping: LM's initial one; chunk: channels at once."""
  with _one_blas_thread():
    h_CxL = np.asarray(h_LxC, np.float64).T
    norm_C = np.maximum(np.linalg.norm(h_CxL, axis=1), 1e-30)
    unit_CxL = h_CxL / norm_C[:, None]  # scale-free fit; residues are scaled back at the end
    C, L = unit_CxL.shape
    if init not in ('hankel', 'grid'):
      raise ValueError(f"init must be 'hankel' or 'grid', got {init!r}")
    poles = hankel_init(unit_CxL, order) if init == 'hankel' else grid_init(C, order, L)
    init_err = _impulse_error(unit_CxL, poles, _lstsq_residues(unit_CxL, poles))
    if steps > 0:
      with jax.enable_x64(True):
        for lo in range(0, C, chunk):
          sl = slice(lo, lo + chunk)
          s, th = _lm(jnp.asarray(unit_CxL[sl]), jnp.asarray(-np.log(np.abs(poles[sl]))),
                      jnp.asarray(np.angle(poles[sl])), steps, damping)
          poles[sl] = np.exp(-np.asarray(s) + 1j * np.asarray(th))
    poles = _clip_radius(poles.astype(np.complex64).astype(np.complex128))  # float32 |lambda| < 1
    residues = _lstsq_residues(unit_CxL, poles) * norm_C[:, None]
    poles, residues = jnp.asarray(poles, jnp.complex64), jnp.asarray(residues, jnp.complex64)
    rel_err = relative_error(jnp.asarray(h_LxC, jnp.float32), poles, residues)
    rel_err = np.asarray(rel_err)
    return poles, residues, dict(rel_err=rel_err, max_rel_err=float(rel_err.max()),
                                 mean_rel_err=float(rel_err.mean()), init_rel_err=init_err,
                                 order=order)


def fit_hyena_filter(h_LxC, order: int, *, tol: float | None = None, max_order: int = 64,
                     **fit_kw):
  """fit_modal on a HyenaFilter output h_LxC (row c of poles/residues is channel c, in the
  filter's '(v o)' layout; the skip bias * u stays separate). With `tol`, the order doubles
  from `order` until every channel's error is <= tol or max_order; see info['order']."""
  while True:
    poles, residues, info = fit_modal(h_LxC, order, **fit_kw)
    if tol is None or info['max_rel_err'] <= tol or 2 * order > max_order:
      return poles, residues, info
    order *= 2
