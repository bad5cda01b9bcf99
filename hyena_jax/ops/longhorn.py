"""Longhorn's recurrence (Liu et al. 2024, arXiv 2407.14207): a diagonal SSM whose update is
one closed-form implicit online-regression step per token.

Each channel d keeps a state row S[d] in R^N and solves, per token,
  S_t[d] = argmin_s ||s - S_{t-1}[d]||^2 + beta_t[d] (s . k_t - x_t[d])^2,
whose Sherman-Morrison solution, with k k^T replaced by its diagonal, is
  S_t = S_{t-1} * (1 - eps_t (x) k_t^2) + (eps_t * x_t) (x) k_t,   y_t = S_t q_t,
  eps = beta / (1 + beta ||k||^2),  beta = sigmoid(r).
The forget gate a = 1 - eps k^2 lies in (0, 1] by construction (eps ||k||^2 < 1): there is no
A matrix and no exp. All recurrences run in float32 whatever the input dtype.

Four ways to run the same scan (`Scan`), as recurrentgemma pairs a reference with fast ones:
  sequential   lax.scan over chunks of a lax.scan over tokens, each chunk under jax.checkpoint:
               backward memory O(L/C * D * N + C * D * N) instead of O(L * D * N). Fastest on
               CPU, where parallel depth buys nothing (benchmarks/longhorn_scan.py).
  chunked      lax.scan over chunks, an associative scan inside each (checkpointed): parallel
               depth (L/C) log C, for accelerators.
  associative  one associative scan over the whole sequence (the textbook parallel form; the
               benchmark's baseline; it stores every tree level for the backward pass).
  reference    one plain lax.scan over tokens, no checkpointing: the simple, obviously correct one.
"""

import enum

import jax
import jax.numpy as jnp


class Scan(str, enum.Enum):
  SEQUENTIAL = 'sequential'
  CHUNKED = 'chunked'
  ASSOCIATIVE = 'associative'
  REFERENCE = 'reference'


SCANS = ('auto',) + tuple(s.value for s in Scan)


def resolve_scan(name: str) -> Scan:
  """'auto': sequential on CPU (measured fastest there), chunked on GPU/TPU."""
  if name == 'auto':
    return Scan.SEQUENTIAL if jax.default_backend() == 'cpu' else Scan.CHUNKED
  return Scan(name)


def step_size(r_BxLxD: jax.Array, k_BxLxN: jax.Array) -> jax.Array:
  """eps = sigmoid(r) / (1 + sigmoid(r) ||k||^2), float32.

  Written with sigmoid rather than 1 / (1 + e^-r + ||k||^2): e^-r overflows for r < -88 and its
  gradient turns into inf * 0 = NaN; here both stay finite for any r.
  """
  beta = jax.nn.sigmoid(r_BxLxD.astype(jnp.float32))
  k2_BxLx1 = jnp.sum(jnp.square(k_BxLxN.astype(jnp.float32)), -1, keepdims=True)
  return beta / (1.0 + beta * k2_BxLx1)


def forget_gate(eps_BxLxD: jax.Array, k_BxLxN: jax.Array) -> jax.Array:
  """a = 1 - eps (x) k^2, (B, L, D, N): materialised only by the tests and the parallel scans."""
  return 1.0 - eps_BxLxD[..., None] * jnp.square(k_BxLxN.astype(jnp.float32))[:, :, None, :]


def _time_major(*arrays):
  return [None if a is None else jnp.moveaxis(a, 1, 0) for a in arrays]


def _token_step(S_BxDxN, xs):
  """One token of the recurrence; a and b are built here, never stored for the whole sequence."""
  eps_BxD, ex_BxD, k_BxN, q_BxN, keep_B = xs
  if keep_B is not None:
    S_BxDxN = S_BxDxN * keep_B[:, None, None]
  a_BxDxN = 1.0 - eps_BxD[:, :, None] * jnp.square(k_BxN)[:, None, :]
  S_BxDxN = a_BxDxN * S_BxDxN + ex_BxD[:, :, None] * k_BxN[:, None, :]
  return S_BxDxN, jnp.einsum('bdn,bn->bd', S_BxDxN, q_BxN)


def _combine(earlier, later):
  a1, b1 = earlier
  a2, b2 = later
  return a2 * a1, a2 * b1 + b2


def _assoc_chunk(S_BxDxN, xs):
  """A chunk by associative scan: h_t = A_t S_0 + B_t with (A, B) the prefix of (a, b)."""
  eps_CxBxD, ex_CxBxD, k_CxBxN, q_CxBxN, keep_CxB = xs
  ksq = jnp.square(k_CxBxN)[:, :, None, :]
  a = 1.0 - eps_CxBxD[..., None] * ksq
  if keep_CxB is not None:
    a = a * keep_CxB[:, :, None, None]
  b = ex_CxBxD[..., None] * k_CxBxN[:, :, None, :]
  A, Bp = jax.lax.associative_scan(_combine, (a, b), axis=0)
  h_CxBxDxN = A * S_BxDxN[None] + Bp
  return h_CxBxDxN[-1], jnp.einsum('cbdn,cbn->cbd', h_CxBxDxN, q_CxBxN)


def scan(x_BxLxD: jax.Array, k_BxLxN: jax.Array, q_BxLxN: jax.Array, eps_BxLxD: jax.Array,
         S0_BxDxN: jax.Array | None = None, *, reset_BxL: jax.Array | None = None,
         impl: Scan | str = Scan.SEQUENTIAL, chunk: int = 64
         ) -> tuple[jax.Array, jax.Array]:
  """y_t = S_t q_t for the Longhorn recurrence; returns (y_BxLxD float32, final S_BxDxN).

  S0 is the state before x_0 (zeros when None), so (y, S) over a split sequence equals the
  whole: scan(x[:, :t]) then scan(x[:, t:], S0=S) gives the same y and S. reset_BxL (bool)
  zeroes the state just before each marked token (the first token of a packed segment).
  """
  impl = resolve_scan(impl) if isinstance(impl, str) else impl
  B, L, D = x_BxLxD.shape
  N = k_BxLxN.shape[-1]
  f32 = lambda a: a.astype(jnp.float32)
  eps, k, q = f32(eps_BxLxD), f32(k_BxLxN), f32(q_BxLxN)
  ex = eps * f32(x_BxLxD)
  keep = None if reset_BxL is None else 1.0 - reset_BxL.astype(jnp.float32)
  S0 = jnp.zeros((B, D, N), jnp.float32) if S0_BxDxN is None else f32(S0_BxDxN)
  xs = _time_major(eps, ex, k, q, keep)
  if impl is Scan.REFERENCE:
    S, y_LxBxD = jax.lax.scan(_token_step, S0, xs)
    return jnp.moveaxis(y_LxBxD, 0, 1), S
  C = L if impl is Scan.ASSOCIATIVE else max(1, min(chunk, L))
  pad = -L % C
  if pad:
    # eps = 0 (and keep = 1) on padding tokens makes a = 1, b = 0: the state passes through.
    xs = [None if a is None else jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1),
                                         constant_values=float(i == 4))
          for i, a in enumerate(xs)]
  xs = [None if a is None else a.reshape((-1, C) + a.shape[1:]) for a in xs]
  if impl is Scan.ASSOCIATIVE:
    S, y = _assoc_chunk(S0, [None if a is None else a[0] for a in xs])
    return jnp.moveaxis(y, 0, 1), S
  if impl is Scan.SEQUENTIAL:
    body = lambda S, chunk_xs: jax.lax.scan(_token_step, S, chunk_xs)
  else:
    body = _assoc_chunk
  # Saving only chunk-boundary states and recomputing inside each chunk in the backward pass
  # is the two-level checkpoint: it is also faster on CPU (less memory traffic).
  S, y_MxCxBxD = jax.lax.scan(jax.checkpoint(body), S0, xs)
  y_BxLxD = jnp.moveaxis(y_MxCxBxD.reshape((-1,) + y_MxCxBxD.shape[2:])[:L], 0, 1)
  return y_BxLxD, S
