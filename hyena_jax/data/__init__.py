"""Datasets: each exposes validate(config, n_dev), train_batch(step), eval_batches(), state()."""

import ml_collections

from hyena_jax import config_lib
from hyena_jax.data.recall import Recall
from hyena_jax.data.synthetic import RandomTokens


class _TextPending:
  """Named text corpora whose tfds pipeline is not in this build yet: fail before compiling."""

  @staticmethod
  def validate(c: ml_collections.ConfigDict, device_count: int) -> None:
    del device_count
    raise config_lib.ConfigError(
        f'data.name={c.data.name!r} needs the tfds text pipeline, which this build does not have '
        'yet; use --config.data.name=random_tokens for a shape/speed smoke run')


DATASETS = {
    'recall': Recall,
    'random_tokens': RandomTokens,
    'wikitext103': _TextPending,
    'pile': _TextPending,
}


def build(c: ml_collections.ConfigDict, mesh):
  return DATASETS[c.data.name](c, mesh)
