"""Datasets: each exposes validate(config, n_dev), train_batch(step), eval_batches(), state(), restore()."""

import ml_collections

from hyena_jax import config_lib
from hyena_jax.data.mqar import MQAR
from hyena_jax.data.recall import Recall
from hyena_jax.data.synthetic import RandomTokens
from hyena_jax.data.text import TEXT_DATASETS, TextDataset


class _PilePending:
  """The Pile has no builder here: fail before compiling, pointing at text_files."""

  @staticmethod
  def validate(c: ml_collections.ConfigDict, device_count: int) -> None:
    del device_count
    raise config_lib.ConfigError(
        f'data.name={c.data.name!r} has no builder yet: point data.name=text_files and '
        'data.files.{train,valid,test} at local Pile text, or use data.name=random_tokens for '
        'a shape/speed smoke run')


DATASETS = {
    'recall': Recall,
    'mqar': MQAR,
    'random_tokens': RandomTokens,
    'pile': _PilePending,
    **{name: TextDataset for name in TEXT_DATASETS},
}


def build(c: ml_collections.ConfigDict, mesh):
  return DATASETS[c.data.name](c, mesh)
