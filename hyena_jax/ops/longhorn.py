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
import functools

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


def _sequential_fwd(has_keep, S0, xs):
  def chunk(S, xs_c):
    S_end, y_c = jax.lax.scan(_token_step, S, xs_c)
    return S_end, (y_c, S)

  xs = xs if has_keep else xs[:4] + (None,)
  S, (y, S_starts) = jax.lax.scan(chunk, S0, xs)
  return (y, S), S_starts


def _sequential_bwd(has_keep, S_starts, xs, dy, dS):
  """Reverse scan over chunks; inside a chunk, recompute its states, then run the adjoint.

  G_t = dL/dS_t = dy_t (x) q_t + keep_{t+1} a_{t+1} G_{t+1}. States are recomputed forward
  from the chunk's saved start, never rebuilt backward by dividing by a (unstable as a -> 0,
  the CUDA kernel's choice).
  """
  xs = xs if has_keep else xs[:4] + (None,)

  def chunk(G, inp):
    S_start, xs_c, dy_c = inp
    _, S_prev_c = jax.lax.scan(lambda S, x: (_token_step(S, x)[0], S), S_start, xs_c)

    def token(G, inp):
      S_prev, (eps, ex, k, q, keep), dy = inp
      if keep is not None:
        S_prev = S_prev * keep[:, None, None]
      ksq = jnp.square(k)
      a = 1.0 - eps[:, :, None] * ksq[:, None, :]
      S_t = a * S_prev + ex[:, :, None] * k[:, None, :]
      G = G + dy[:, :, None] * q[:, None, :]
      da = G * S_prev
      dksq = -jnp.einsum('bdn,bd->bn', da, eps)
      grads = (-jnp.einsum('bdn,bn->bd', da, ksq),                      # d eps
               jnp.einsum('bdn,bn->bd', G, k),                           # d (eps x)
               jnp.einsum('bdn,bd->bn', G, ex) + 2.0 * k * dksq,          # d k
               jnp.einsum('bdn,bd->bn', S_t, dy))                        # d q
      G = G * a
      if keep is not None:
        G = G * keep[:, None, None]
      return G, grads

    return jax.lax.scan(token, G, (S_prev_c, xs_c, dy_c), reverse=True)

  dS0, grads = jax.lax.scan(chunk, dS, (S_starts, xs, dy), reverse=True)
  return dS0, grads + (jnp.zeros_like(xs[4]) if has_keep else None,)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _sequential(has_keep, S0, xs):
  return _sequential_fwd(has_keep, S0, xs)[0]


def _sequential_vjp_fwd(has_keep, S0, xs):
  out, S_starts = _sequential_fwd(has_keep, S0, xs)
  return out, (S_starts, xs)


def _sequential_vjp_bwd(has_keep, res, cotangents):
  S_starts, xs = res
  dy, dS = cotangents
  dS0, dxs = _sequential_bwd(has_keep, S_starts, xs, dy, dS)
  if not has_keep:
    dxs = dxs[:4] + (xs[4],)  # the placeholder's cotangent (never used)
  return dS0, dxs


_sequential.defvjp(_sequential_vjp_fwd, _sequential_vjp_bwd)


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
    # A hand-written adjoint of the two-level checkpoint: only chunk-start states are saved,
    # each chunk is recomputed in the backward pass (README "Longhorn scan" for its speed).
    has_keep = xs[4] is not None
    placeholder = jnp.zeros(xs[0].shape[:3], jnp.float32)
    y_MxCxBxD, S = _sequential(has_keep, S0, tuple(xs[:4]) + (xs[4] if has_keep else placeholder,))
  else:
    # Saving only chunk-boundary states and recomputing inside each chunk in the backward
    # pass is the two-level checkpoint.
    S, y_MxCxBxD = jax.lax.scan(jax.checkpoint(_assoc_chunk), S0, xs)
  y_BxLxD = jnp.moveaxis(y_MxCxBxD.reshape((-1,) + y_MxCxBxD.shape[2:])[:L], 0, 1)
  return y_BxLxD, S
