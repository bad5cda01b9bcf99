"""Associative recall (safari synthetics), generated on device from (seed, step).

A sequence is n key-value pairs followed by a query marker and a key seen earlier; the
model must emit that key's value. Keys are tokens [0, V//2), values [V//2, V), the query
marker is V. Each sequence draws its own key->value map (values may repeat, as in safari).
Training is next-token loss on every position; accuracy is on the final token only.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from hyena_jax import config_lib

_TRAIN_TAG, _EVAL_TAG, _META_VAL_TAG = 0, 1, 2


def make_sequence(key: jax.Array, seq_len: int, vocab_size: int) -> dict[str, jax.Array]:
  """One example: inputs/targets of length seq_len (even), acc_mask 1 at the query position."""
  n_keys = vocab_size // 2
  n_pairs = (seq_len - 2) // 2
  k_map, k_keys, k_query = jax.random.split(key, 3)
  value_of_key = jax.random.randint(k_map, (n_keys,), n_keys, vocab_size)
  keys_P = jax.random.randint(k_keys, (n_pairs,), 0, n_keys)
  q = keys_P[jax.random.randint(k_query, (), 0, n_pairs)]
  pairs = jnp.stack([keys_P, value_of_key[keys_P]], axis=1).reshape(-1)
  seq = jnp.concatenate([pairs, jnp.stack([jnp.int32(vocab_size), q, value_of_key[q]])])
  seq = seq.astype(jnp.int32)
  acc_mask = jnp.zeros((seq_len,), jnp.float32).at[-1].set(1.0)
  return {'inputs': seq[:-1], 'targets': seq[1:], 'acc_mask': acc_mask}


def make_batch(key: jax.Array, batch_size: int, seq_len: int, vocab_size: int):
  return jax.vmap(lambda k: make_sequence(k, seq_len, vocab_size))(
      jax.random.split(key, batch_size))


class Recall:
  """Infinite, stateless stream: batch(step) depends only on (seed, step)."""

  @staticmethod
  def validate(c: ml_collections.ConfigDict, device_count: int) -> None:
    d = c.data
    if d.vocab_size < 2:
      raise config_lib.ConfigError(f'data.vocab_size={d.vocab_size} must be >= 2 (keys + values)')
    if d.seq_len < 4 or d.seq_len % 2:
      raise config_lib.ConfigError(f'data.seq_len={d.seq_len} must be even and >= 4 for recall')
    if c.model.vocab_size < d.vocab_size + 1:
      raise config_lib.ConfigError(
          f'model.vocab_size={c.model.vocab_size} < data.vocab_size+1={d.vocab_size + 1}')
    if d.num_eval <= 0 or d.num_eval % device_count:
      raise config_lib.ConfigError(
          f'data.num_eval={d.num_eval} must be positive and divisible by {device_count} devices')

  def __init__(self, c: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.seq_len, self.vocab_size = c.data.seq_len, c.data.vocab_size
    self.batch_size = c.train.global_batch_size
    self.sharding = NamedSharding(mesh, P('data'))
    self._base_key = jax.random.fold_in(jax.random.PRNGKey(c.seed), _TRAIN_TAG)
    self._eval_key = jax.random.fold_in(jax.random.PRNGKey(c.data.eval_seed), _EVAL_TAG)
    self._meta_val_key = jax.random.fold_in(jax.random.PRNGKey(c.seed), _META_VAL_TAG)
    self.num_eval = c.data.num_eval
    gen = functools.partial(make_batch, seq_len=self.seq_len, vocab_size=self.vocab_size)
    # Generated inside jit straight into the data sharding: every device (and every host)
    # computes only its shard, and the values do not depend on the device count.
    self._gen = jax.jit(gen, static_argnums=1, out_shardings=self.sharding)

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    return self._gen(jax.random.fold_in(self._base_key, step), self.batch_size)

  def meta_val_batch(self, step: int, size: int) -> dict[str, jax.Array]:
    """Fresh sequences for the L2T held-out loss (a stream disjoint from train by its tag)."""
    return self._gen(jax.random.fold_in(self._meta_val_key, step), size)

  def eval_batches(self):
    """The fixed held-out set, in global-batch-sized chunks (the last may be smaller)."""
    n_dev = self.sharding.mesh.size
    chunk = max(self.batch_size // n_dev * n_dev, n_dev)
    for i, start in enumerate(range(0, self.num_eval, chunk)):
      size = min(chunk, self.num_eval - start)
      yield self._gen(jax.random.fold_in(self._eval_key, i), size)

  def state(self):
    return {}  # Nothing to save: the stream is a pure function of (seed, step).

  def restore(self, state) -> None:
    del state


def eval_set_numpy(c: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The held-out set on the host (for inspection and tests)."""
  mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  batches = list(Recall(c, mesh).eval_batches())
  return {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}
