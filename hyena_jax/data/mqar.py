"""Multi-query associative recall (zoology's MQAR), generated on device from (seed, step).

Semantics of zoology's `multiquery_ar` (HazyResearch/zoology, data/associative_recall.py):
an example opens with n key-value pairs k1 v1 ... kn vn, keys drawn without replacement
from [1, V//2) (0 is zoology's filler token), values without replacement from [V//2, V).
After this context of 2n tokens there are S = (L - 2n) // 2 even query slots; each key is
queried once, at slot g drawn without replacement with p(g) ∝ (g + 1)^(power_a - 1), so
small power_a puts most queries right after the context. The target at a query key's
position is its value (the value itself never appears after the context). Every other
position holds a uniform token of [0, V) (random_non_queries) or 0, and is not scored:
loss and accuracy are on the n query positions only (loss_mask == acc_mask).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hyena_jax import config_lib
from hyena_jax.data import recall


def gap_probs(num_slots: int, power_a: float) -> np.ndarray:
  """p over query slots 0..S-1 (zoology's power law over gaps 1..S), float64 on the host."""
  p_S = np.arange(1, num_slots + 1, dtype=np.float64) ** (power_a - 1.0)
  return p_S / p_S.sum()


def make_sequence(key: jax.Array, *, seq_len: int, vocab_size: int, num_kv_pairs: int,
                  power_a: float, random_non_queries: bool) -> dict[str, jax.Array]:
  n, half, ctx = num_kv_pairs, vocab_size // 2, 2 * num_kv_pairs
  k_keys, k_vals, k_gaps, k_fill = jax.random.split(key, 4)
  keys_N = jax.random.choice(k_keys, jnp.arange(1, half, dtype=jnp.int32), (n,), replace=False)
  vals_N = jax.random.choice(k_vals, jnp.arange(half, vocab_size, dtype=jnp.int32), (n,),
                             replace=False)
  p_S = gap_probs((seq_len - ctx) // 2, power_a)
  # Weighted draws without replacement come out in draw order (Gumbel top-k), so key i
  # gets the i-th draw, as zoology's sequential np.random.choice assigns them.
  gaps_N = jax.random.choice(k_gaps, p_S.shape[0], (n,), replace=False,
                             p=jnp.asarray(p_S, jnp.float32))
  pos_N = ctx + 2 * gaps_N
  fill_L = (jax.random.randint(k_fill, (seq_len,), 0, vocab_size, jnp.int32)
            if random_non_queries else jnp.zeros((seq_len,), jnp.int32))
  inputs_L = fill_L.at[0:ctx:2].set(keys_N).at[1:ctx:2].set(vals_N).at[pos_N].set(keys_N)
  # Unscored targets are 0, a valid token that the masks keep out of loss and accuracy.
  targets_L = jnp.zeros((seq_len,), jnp.int32).at[pos_N].set(vals_N)
  mask_L = jnp.zeros((seq_len,), jnp.float32).at[pos_N].set(1.0)
  return {'inputs': inputs_L, 'targets': targets_L, 'acc_mask': mask_L, 'loss_mask': mask_L}


def make_batch(key: jax.Array, batch_size: int, **kw) -> dict[str, jax.Array]:
  return jax.vmap(lambda k: make_sequence(k, **kw))(jax.random.split(key, batch_size))


def generator_kwargs(c: ml_collections.ConfigDict) -> dict:
  q = c.data.mqar
  return {'seq_len': c.data.seq_len, 'vocab_size': c.data.vocab_size,
          'num_kv_pairs': q.num_kv_pairs, 'power_a': float(q.power_a),
          'random_non_queries': bool(q.random_non_queries)}


class MQAR(recall.Recall):
  """Recall's stateless stream (train / meta-val / fixed eval keys), MQAR's generator."""

  @staticmethod
  def validate(c: ml_collections.ConfigDict, device_count: int) -> None:
    d, q = c.data, c.data.mqar
    n = q.num_kv_pairs
    _check(n >= 1, f'data.mqar.num_kv_pairs={n} must be >= 1')
    # zoology asserts both: an even length, and room for one even query slot per key.
    _check(d.seq_len % 2 == 0 and d.seq_len >= 4 * n,
           f'data.seq_len={d.seq_len} must be even and >= 4*data.mqar.num_kv_pairs={4 * n}')
    _check(d.vocab_size // 2 - 1 >= n,
           f'data.vocab_size={d.vocab_size} leaves {max(d.vocab_size // 2 - 1, 0)} keys in '
           f'[1, vocab_size//2); data.mqar.num_kv_pairs={n} distinct keys need '
           f'vocab_size >= {2 * n + 2}')
    _check(q.power_a > 0, f'data.mqar.power_a={q.power_a} must be > 0 (1: uniform gaps)')
    _check(isinstance(q.random_non_queries, bool),
           f'data.mqar.random_non_queries={q.random_non_queries!r} must be True or False')
    _check(c.model.vocab_size >= d.vocab_size,
           f'model.vocab_size={c.model.vocab_size} < data.vocab_size={d.vocab_size}')
    _check(d.num_eval > 0 and d.num_eval % device_count == 0,
           f'data.num_eval={d.num_eval} must be positive and divisible by {device_count} devices')
    # L2T's losses average CE over every position; they would train on the random filler.
    _check(c.l2t.mode == 'off',
           f'l2t.mode={c.l2t.mode!r} ignores loss_mask; data.name=mqar needs l2t.mode=off')

  def __init__(self, c: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    super().__init__(c, mesh)
    self._gen = _jitted_generator(self.sharding, **generator_kwargs(c))


@functools.lru_cache(maxsize=16)
def _jitted_generator(sharding, **kw):
  # As Recall: each device computes only its shard, and values ignore the device count.
  # Cached so that streams differing only in seed (train, eval, tests) compile once.
  return jax.jit(functools.partial(make_batch, **kw), static_argnums=1, out_shardings=sharding)


def _check(ok: bool, msg: str) -> None:
  if not ok:
    raise config_lib.ConfigError(msg)


def eval_set_numpy(c: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The held-out set on the host (for inspection and tests)."""
  mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  batches = list(MQAR(c, mesh).eval_batches())
  return {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}
