"""Uniform random tokens: a data-free stream for smoke runs and throughput measurements."""

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import NamedSharding, PartitionSpec as P


class RandomTokens:
  """Every token uniform over model.vocab_size; nothing to learn beyond the unigram."""

  @staticmethod
  def validate(c: ml_collections.ConfigDict, device_count: int) -> None:
    del c, device_count

  def __init__(self, c: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.seq_len, self.batch_size = c.data.seq_len, c.train.global_batch_size
    self.sharding = NamedSharding(mesh, P('data'))
    self._key = jax.random.PRNGKey(c.seed)
    vocab, L = c.model.vocab_size, c.data.seq_len

    def gen(key, batch_size):
      seq = jax.random.randint(key, (batch_size, L + 1), 0, vocab, jnp.int32)
      return {'inputs': seq[:, :-1], 'targets': seq[:, 1:],
              'acc_mask': jnp.ones((batch_size, L), jnp.float32)}

    self._gen = jax.jit(gen, static_argnums=1, out_shardings=self.sharding)

  def train_batch(self, step: int):
    return self._gen(jax.random.fold_in(self._key, step), self.batch_size)

  def eval_batches(self):
    yield self._gen(jax.random.fold_in(self._key, -1 % (2**31)), self.batch_size)

  def state(self):
    return {}

  def restore(self, state) -> None:
    del state
