"""Causal softmax attention and GPT-NeoX rotary position embeddings.

Two implementations of the same causal attention, as recurrentgemma pairs a reference with a
fast kernel, picked by `attend(..., impl=)`:
  xla        causal_attention: one explicit L x L einsum and softmax, the obviously correct one.
  blockwise  blockwise_causal_attention: FlashAttention-2 style tiles with an online softmax and
             a recomputing backward pass: memory O(L), and the blocks above the diagonal are
             never computed (half the FLOPs).
"""

import functools
import math

import jax
from jax import lax
import jax.numpy as jnp


def rotary(x_BxLxHxK: jax.Array, rotary_dims: int, base: float = 10000.0,
           offset: jax.Array | int = 0, *, seq_axis: int = 1) -> jax.Array:
  """GPT-NeoX rotary embedding on the first `rotary_dims` of each head, positions
  offset..offset+L-1 (offset > 0: tokens decoded after a cached prefix; may be traced).

  Half-split pairing (NeoX `rotate_half`): dim i rotates with dim i + rotary_dims/2 by angle
  t * base^(-2i/rotary_dims). The remaining K - rotary_dims dims pass through unchanged.
  Angles and the rotation run in float32; the result is cast back to x's dtype.
  """
  L, K = x_BxLxHxK.shape[seq_axis], x_BxLxHxK.shape[-1]
  if rotary_dims % 2 or not 0 <= rotary_dims <= K:
    raise ValueError(f'rotary_dims={rotary_dims} must be even and in [0, head dim {K}]')
  if rotary_dims == 0:
    return x_BxLxHxK
  half = rotary_dims // 2
  inv_freq_R = 1.0 / base**(jnp.arange(0, rotary_dims, 2, dtype=jnp.float32) / rotary_dims)
  t_L = jnp.arange(L, dtype=jnp.float32) + jnp.asarray(offset, jnp.float32)
  angle_LxR = t_L[:, None] * inv_freq_R[None, :]
  # Broadcast over batch and heads: (1, L, 1, R).
  # Broadcast over every axis but the sequence's and the last: (1, L, 1, R) for B x L x H x K.
  shape = [1] * (x_BxLxHxK.ndim - 1) + [angle_LxR.shape[-1]]
  shape[seq_axis] = L
  cos, sin = jnp.cos(angle_LxR).reshape(shape), jnp.sin(angle_LxR).reshape(shape)
  x = x_BxLxHxK.astype(jnp.float32)
  x1, x2, rest = x[..., :half], x[..., half:rotary_dims], x[..., rotary_dims:]
  y = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], axis=-1)
  return y.astype(x_BxLxHxK.dtype)


def causal_attention(q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array
                     ) -> jax.Array:
  """softmax(q k^T / sqrt(K), causal) v per head; output (B, L, H, K) in v's dtype.

  Scores accumulate and the softmax runs in float32 whatever the input dtype (half precision
  logits overflow and lose small probabilities); the probabilities are cast back for p @ v.
  The reference: it holds B*H*L*L float32 scores and computes the masked half too, so past a
  few hundred tokens blockwise_causal_attention is faster (on XLA:CPU) and far smaller.
  """
  L, K = q_BxLxHxK.shape[1], q_BxLxHxK.shape[-1]
  s_BxHxLxL = jnp.einsum('bthk,bshk->bhts', q_BxLxHxK, k_BxLxHxK,
                         preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(K))
  causal_LxL = jnp.tril(jnp.ones((L, L), dtype=bool))
  # The diagonal is always kept, so no row is fully masked and the finite fill never wins.
  s_BxHxLxL = jnp.where(causal_LxL[None, None], s_BxHxLxL, jnp.finfo(jnp.float32).min)
  p_BxHxLxL = jax.nn.softmax(s_BxHxLxL, axis=-1)
  return jnp.einsum('bhts,bshk->bthk', p_BxHxLxL.astype(v_BxLxHxK.dtype), v_BxLxHxK)


def cached_attention(q_BxTxHxK: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array,
                     pos: jax.Array) -> jax.Array:
  """Decode-time attention: T queries at positions pos..pos+T-1 over a KV cache of S slots
  (slot s holds position s; slots past pos+T-1 are masked, whatever they hold).

  Cost O(T S) per call, so one decoded token costs O(S), with no L x L matrix. Same float32
  softmax as causal_attention, so cached decoding reproduces the full forward.
  """
  T, S, K = q_BxTxHxK.shape[1], k_BxSxHxK.shape[1], q_BxTxHxK.shape[-1]
  s_BxHxTxS = jnp.einsum('bthk,bshk->bhts', q_BxTxHxK, k_BxSxHxK,
                         preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(K))
  visible_TxS = jnp.arange(S)[None, :] <= pos + jnp.arange(T)[:, None]
  s_BxHxTxS = jnp.where(visible_TxS[None, None], s_BxHxTxS, jnp.finfo(jnp.float32).min)
  p_BxHxTxS = jax.nn.softmax(s_BxHxTxS, axis=-1)
  return jnp.einsum('bhts,bshk->bthk', p_BxHxTxS.astype(v_BxSxHxK.dtype), v_BxSxHxK)


IMPLS = ('auto', 'xla', 'blockwise')
# 'auto' takes blockwise from this length on. Measured on XLA:CPU (2 cores), fwd+bwd, 12 heads
# of 64: the two tie at L=128 (4 ms), blockwise is 1.3x faster at 256, 2x at 512, 4x at 1024.
# Shorter contexts keep the reference, where the difference is a millisecond or two.
BLOCKWISE_MIN_LEN = 256
_NEG = float(jnp.finfo(jnp.float32).min)


def resolve_impl(impl: str, L: int) -> str:
  """'xla' or 'blockwise' for a sequence of length L."""
  if impl not in IMPLS:
    raise ValueError(f'attention impl={impl!r} is unknown; choose from {IMPLS}')
  if impl == 'auto':
    return 'blockwise' if L >= BLOCKWISE_MIN_LEN else 'xla'
  return impl


def attend(q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array, *,
           impl: str = 'auto') -> jax.Array:
  """Causal attention by `impl`: 'xla' (causal_attention), 'blockwise', or 'auto' (by L)."""
  if impl not in IMPLS:
    raise ValueError(f'attention impl={impl!r} is unknown; choose from {IMPLS}')
  if resolve_impl(impl, q_BxLxHxK.shape[1]) == 'xla':
    return causal_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK)
  return blockwise_causal_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK)


def blockwise_causal_attention(q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array,
                               v_BxLxHxK: jax.Array, *, block_q: int = 512,
                               block_k: int = 256) -> jax.Array:
  """causal_attention computed in (block_q x block_k) tiles, never holding an L x L matrix.

  Same float32 scores, softmax and accumulation, output in v's dtype; its gradient is a custom
  VJP (no second derivatives) that saves only the output and the float32 row logsumexp and
  recomputes each tile's probabilities. Blocks are capped at L (equal ones evened out), and L
  is padded to a multiple of both: padded keys lie after every real query, so the causal mask
  alone hides them.

  Default 512 x 256, measured on XLA:CPU (benchmarks/attention_blocks.py, log
  results/attention_blocks_cpu.json: each pass of the core timed apart, 12 heads of 64, 2 cores).
  The backward runs with the two swapped (block_k query rows x block_q keys): it holds its tiles
  key-major, so both passes then multiply tiles of the same 512 x 256 memory shape, and the
  backward ran 1.1-1.2x faster at 1K-8K than with the forward's blocks.
  """

  # Heads-major once, here: every tile matmul is then a b,h-batched product of contiguous rows.
  hm = lambda x_BxLxHxK: jnp.transpose(x_BxLxHxK, (0, 2, 1, 3))
  o_BxHxLxK = blockwise_causal_attention_heads_major(
      hm(q_BxLxHxK), hm(k_BxLxHxK), hm(v_BxLxHxK), block_q=block_q, block_k=block_k)
  return hm(o_BxHxLxK)


def blockwise_causal_attention_heads_major(q_BxHxLxK: jax.Array, k_BxHxLxK: jax.Array,
                                           v_BxHxLxK: jax.Array, *, block_q: int = 512,
                                           block_k: int = 256) -> jax.Array:
  """blockwise_causal_attention on (B, H, L, K) arrays (what the mixer hands it: see
  models/attention.py for why the layout change happens there)."""
  L = q_BxHxLxK.shape[2]
  bq, bk, Lp = _blocks(L, block_q, block_k)
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, Lp - L), (0, 0))) if Lp > L else x
  return _flash(pad(q_BxHxLxK), pad(k_BxHxLxK), pad(v_BxHxLxK), bq, bk)[:, :, :L]


def _blocks(L: int, block_q: int, block_k: int) -> tuple[int, int, int]:
  """Tile sizes capped at L and the padded length, a multiple of both."""
  bq, bk = min(block_q, L), min(block_k, L)
  if bq > bk:  # A multiple of bk, so the padded length stays below L + bq.
    bq = bq // bk * bk
  if bq == bk and L % bq:
    # As many blocks as before, evened out (to a multiple of 16): L=192 runs as two blocks of
    # 96, not as two of 128 of which 64 rows are padding.
    even = -(-L // -(-L // bq))
    bq = bk = min(-(-even // 16) * 16, bq)
  return bq, bk, -(-L // math.lcm(bq, bk)) * math.lcm(bq, bk)


def _row_max(x: jax.Array) -> jax.Array:
  """x.max(-1), the last axis first folded onto at most 32 lanes by elementwise maxima.

  Why: XLA:CPU lowers a max over a long minor axis to a reduce-window of width 32 that runs
  ~3x slower than the fold (1.0 vs 0.3 ms for one 12 x 512 x 256 tile, and the forward pass at
  L=2K 0.074 vs 0.060 s: benchmarks/xla_cpu_micro.py's tile_rowmax_* and forward_L2048_max_*;
  sums run at the fold's speed, so the row sums stay plain). A max is exact in any order.
  """
  while x.shape[-1] > 32 and x.shape[-1] % 2 == 0:
    half = x.shape[-1] // 2
    x = jnp.maximum(x[..., :half], x[..., half:])
  return x.max(-1)


def _visible(t0, bq: int, s0, bk: int) -> jax.Array:
  """(bq, bk) causal mask of the tile with query rows t0.. and key columns s0.."""
  return (s0 + jnp.arange(bk))[None, :] <= (t0 + jnp.arange(bq))[:, None]


def _flash_forward(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, bq: int, bk: int):
  """(o, lse): o in v's dtype, lse = the float32 logsumexp of each row's scaled scores."""
  B, H, L, K = q_BxHxLxK.shape
  scale = 1.0 / math.sqrt(K)

  def tile(acc, q_BxHxQxK, t0, j, masked: bool):
    """The online-softmax update of rows t0.. (q's rows) by key block j."""
    m_BxHxQ, l_BxHxQ, o_BxHxQxK = acc
    k_j = lax.dynamic_slice_in_dim(k_BxHxLxK, j * bk, bk, axis=2)
    v_j = lax.dynamic_slice_in_dim(v_BxHxLxK, j * bk, bk, axis=2)
    s_BxHxQxS = jnp.einsum('bhqk,bhsk->bhqs', q_BxHxQxK, k_j, preferred_element_type=jnp.float32)
    if masked:
      visible = _visible(t0, q_BxHxQxK.shape[2], j * bk, bk)
      s_BxHxQxS = jnp.where(visible[None, None], s_BxHxQxS, _NEG)
    # The scale rides on the max and inside the exp: no extra pass over the tile.
    m_new = jnp.maximum(m_BxHxQ, _row_max(s_BxHxQxS) * scale)
    rescale = jnp.exp(m_BxHxQ - m_new)
    p_BxHxQxS = jnp.exp(s_BxHxQxS * scale - m_new[..., None])
    pv_BxHxQxK = jnp.einsum('bhqs,bhsk->bhqk', p_BxHxQxS.astype(v_BxHxLxK.dtype), v_j,
                            preferred_element_type=jnp.float32)
    return (m_new, l_BxHxQ * rescale + p_BxHxQxS.sum(-1),
            o_BxHxQxK * rescale[..., None] + pv_BxHxQxK)

  def query_block(i, carry):
    o_BxHxLxK, lse_BxHxL = carry
    t0 = i * bq
    q_i = lax.dynamic_slice_in_dim(q_BxHxLxK, t0, bq, axis=2)
    # Key blocks 0..n_full-1 lie wholly at or below the diagonal: no mask. Blocks n_full..n_seen-1
    # straddle it; blocks from n_seen on are all future and are never visited. Block 0 comes
    # first and holds key 0, so every row's running max is finite after it.
    n_full, n_seen = (t0 + 1) // bk, (t0 + bq + bk - 1) // bk
    acc = (jnp.full((B, H, bq), -jnp.inf, jnp.float32), jnp.zeros((B, H, bq), jnp.float32),
           jnp.zeros((B, H, bq, K), jnp.float32))
    acc = lax.fori_loop(0, n_full, lambda j, a: tile(a, q_i, t0, j, False), acc)
    acc = lax.fori_loop(n_full, n_seen, lambda j, a: tile(a, q_i, t0, j, True), acc)
    m_BxHxQ, l_BxHxQ, o_BxHxQxK = acc
    o_i = (o_BxHxQxK / l_BxHxQ[..., None]).astype(v_BxHxLxK.dtype)
    return (lax.dynamic_update_slice_in_dim(o_BxHxLxK, o_i, t0, axis=2),
            lax.dynamic_update_slice_in_dim(lse_BxHxL, m_BxHxQ + jnp.log(l_BxHxQ), t0, axis=2))

  init = (jnp.zeros(q_BxHxLxK.shape, v_BxHxLxK.dtype), jnp.zeros((B, H, L), jnp.float32))
  return lax.fori_loop(0, L // bq, query_block, init)


def _flash_backward(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, o_BxHxLxK, lse_BxHxL, do_BxHxLxK,
                    bq: int, bk: int):
  """FlashAttention-2's backward: per key block, dK and dV accumulate over the query blocks
  that see it while dQ accumulates in a float32 (B, H, L, K) buffer."""
  B, H, L, K = q_BxHxLxK.shape
  scale = 1.0 / math.sqrt(K)
  # D_t = sum_k dO * O = sum_s P dP: the softmax backward's row term, without P.
  d_BxHxL = jnp.einsum('bhtk,bhtk->bht', do_BxHxLxK.astype(jnp.float32),
                       o_BxHxLxK.astype(jnp.float32))

  def tile(acc, k_BxHxSxK, v_BxHxSxK, s0, i, masked: bool):
    """Query block i's contribution to dq and to the gradients of keys s0.. (k's rows)."""
    dq_BxHxLxK, dk_BxHxSxK, dv_BxHxSxK = acc
    t0 = i * bq
    q_i, do_i = (lax.dynamic_slice_in_dim(x, t0, bq, axis=2) for x in (q_BxHxLxK, do_BxHxLxK))
    lse_i, d_i = (lax.dynamic_slice_in_dim(x, t0, bq, axis=2) for x in (lse_BxHxL, d_BxHxL))
    # Tiles held key-major (s, q): four of the five matmuls are then plain or A B^T products,
    # which XLA:CPU runs ~1.5x faster than the A^T B form left for dQ.
    s_BxHxSxQ = jnp.einsum('bhsk,bhqk->bhsq', k_BxHxSxK, q_i, preferred_element_type=jnp.float32)
    p_BxHxSxQ = jnp.exp(s_BxHxSxQ * scale - lse_i[:, :, None, :])
    if masked:
      visible = _visible(t0, bq, s0, k_BxHxSxK.shape[2]).T
      p_BxHxSxQ = jnp.where(visible[None, None], p_BxHxSxQ, 0.0)
    dv_BxHxSxK = dv_BxHxSxK + jnp.einsum('bhsq,bhqk->bhsk', p_BxHxSxQ.astype(do_i.dtype), do_i,
                                         preferred_element_type=jnp.float32)
    dp_BxHxSxQ = jnp.einsum('bhsk,bhqk->bhsq', v_BxHxSxK, do_i,
                            preferred_element_type=jnp.float32)
    ds_BxHxSxQ = (p_BxHxSxQ * (dp_BxHxSxQ - d_i[:, :, None, :]) * scale).astype(q_i.dtype)
    dk_BxHxSxK = dk_BxHxSxK + jnp.einsum('bhsq,bhqk->bhsk', ds_BxHxSxQ, q_i,
                                         preferred_element_type=jnp.float32)
    dq_i = lax.dynamic_slice_in_dim(dq_BxHxLxK, t0, bq, axis=2) + jnp.einsum(
        'bhsq,bhsk->bhqk', ds_BxHxSxQ, k_BxHxSxK, preferred_element_type=jnp.float32)
    return (lax.dynamic_update_slice_in_dim(dq_BxHxLxK, dq_i, t0, axis=2), dk_BxHxSxK,
            dv_BxHxSxK)

  def key_block(j, carry):
    dq_BxHxLxK, dk_BxHxLxK, dv_BxHxLxK = carry
    s0 = j * bk
    k_j = lax.dynamic_slice_in_dim(k_BxHxLxK, s0, bk, axis=2)
    v_j = lax.dynamic_slice_in_dim(v_BxHxLxK, s0, bk, axis=2)
    # Query blocks before i_seen are all in this key block's past (skipped); i_seen..i_full-1
    # straddle the diagonal; from i_full on every row sees every key of the block.
    i_seen, i_full = s0 // bq, (s0 + bk + bq - 2) // bq
    zeros = jnp.zeros((B, H, bk, K), jnp.float32)
    acc = (dq_BxHxLxK, zeros, zeros)
    acc = lax.fori_loop(i_seen, i_full, lambda i, a: tile(a, k_j, v_j, s0, i, True), acc)
    dq_BxHxLxK, dk_j, dv_j = lax.fori_loop(
        i_full, L // bq, lambda i, a: tile(a, k_j, v_j, s0, i, False), acc)
    put = lambda x, x_j: lax.dynamic_update_slice_in_dim(x, x_j.astype(x.dtype), s0, axis=2)
    return dq_BxHxLxK, put(dk_BxHxLxK, dk_j), put(dv_BxHxLxK, dv_j)

  init = (jnp.zeros(q_BxHxLxK.shape, jnp.float32), jnp.zeros_like(k_BxHxLxK),
          jnp.zeros_like(v_BxHxLxK))
  dq_BxHxLxK, dk_BxHxLxK, dv_BxHxLxK = lax.fori_loop(0, L // bk, key_block, init)
  return dq_BxHxLxK.astype(q_BxHxLxK.dtype), dk_BxHxLxK, dv_BxHxLxK


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _flash(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, bq: int, bk: int):
  return _flash_forward(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, bq, bk)[0]


def _flash_fwd(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, bq, bk):
  o_BxHxLxK, lse_BxHxL = _flash_forward(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, bq, bk)
  return o_BxHxLxK, (q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, o_BxHxLxK, lse_BxHxL)


def _flash_bwd(bq, bk, residuals, do_BxHxLxK):
  # Swapped blocks (see blockwise_causal_attention): L is a multiple of both either way.
  return _flash_backward(*residuals, do_BxHxLxK, bk, bq)


_flash.defvjp(_flash_fwd, _flash_bwd)
