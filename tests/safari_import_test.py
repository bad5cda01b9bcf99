"""safari HyenaOperator state_dict import: layout, forward equivalence, errors."""

import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors import numpy as st_numpy

from hyena_jax.config_lib import base_config
from hyena_jax.models import HyenaOperator
from hyena_jax.models import safari_import

D, L_MAX, EMB, FILTER_ORDER, SHORT_K = 8, 16, 5, 8, 3
PREFIX = 'backbone.layers.3.mixer.'


def _cfg(order, learn_pos_emb=False):
  cfg = base_config().model
  cfg.d_model, cfg.l_max = D, L_MAX
  h = cfg.hyena
  h.order, h.emb_dim, h.filter_order, h.short_filter_order = order, EMB, FILTER_ORDER, SHORT_K
  h.learn_pos_emb = learn_pos_emb
  return cfg


def _safari_buffers(l_max, emb_dim, channels):
  """z, t, deltas as safari's PositionalEmbedding / ExponentialModulation build them (float32)."""
  t_L = np.linspace(0.0, 1.0, l_max).astype(np.float32)
  w_L = (2 * np.pi * np.linspace(0, l_max - 1, l_max) / l_max).astype(np.float32)
  bands = (emb_dim - 1) // 2
  f_K = np.linspace(1e-4, bands - 1, bands).astype(np.float32)
  phase_LxK = w_L[:, None] * f_K[None, :]  # exp(-i f w) = cos(f w) - i sin(f w)
  z = np.concatenate([t_L[:, None], np.cos(phase_LxK), -np.sin(phase_LxK)], axis=-1)
  deltas = np.linspace(np.log(1e-2) / 1.5, np.log(1e-2) / 0.3, channels)
  return (z[None].astype(np.float32), t_L[None, :, None],
          deltas[None, None].astype(np.float32))


def _safari_state_dict(order, seed=0, perturb_z=False):
  """Random weights under safari's names and shapes (num_inner_mlps=2, one shared Sin)."""
  rng = np.random.default_rng(seed)
  r = lambda *shape, s=1.0: (s * rng.standard_normal(shape)).astype(np.float32)
  W, C = (order + 1) * D, (order - 1) * D
  z, t, deltas = _safari_buffers(L_MAX, EMB, C)
  if perturb_z:
    z = z + r(*z.shape, s=0.1)
  freq = (1.0 + r(1, FILTER_ORDER, s=0.2))
  f = 'filter_fn.implicit_filter'
  return {
      'in_proj.weight': r(W, D, s=D ** -0.5), 'in_proj.bias': r(W, s=0.1),
      'out_proj.weight': r(D, D, s=D ** -0.5), 'out_proj.bias': r(D, s=0.1),
      'short_filter.weight': r(W, 1, SHORT_K, s=0.5), 'short_filter.bias': r(W, s=0.1),
      f'{f}.0.weight': r(FILTER_ORDER, EMB), f'{f}.0.bias': r(FILTER_ORDER),
      f'{f}.1.freq': freq, f'{f}.3.freq': freq.copy(), f'{f}.5.freq': freq.copy(),
      f'{f}.2.weight': r(FILTER_ORDER, FILTER_ORDER, s=0.4), f'{f}.2.bias': r(FILTER_ORDER),
      f'{f}.4.weight': r(FILTER_ORDER, FILTER_ORDER, s=0.4), f'{f}.4.bias': r(FILTER_ORDER),
      f'{f}.6.weight': r(C, FILTER_ORDER, s=0.4),
      'filter_fn.bias': r(C),
      'filter_fn.pos_emb.z': z, 'filter_fn.pos_emb.t': t,
      'filter_fn.modulation.deltas': deltas,
  }


def _safari_forward(sd, u_BxLxD, order):
  """safari HyenaOperator.forward in float64 numpy, written from its code path."""
  sd = {k: v.astype(np.float64) for k, v in sd.items()}
  B, L, _ = u_BxLxD.shape
  x = u_BxLxD @ sd['in_proj.weight'].T + sd['in_proj.bias']
  # Conv1d(groups=W, padding=K-1)[..., :L]: cross-correlation over a left-padded input.
  w_WxK = sd['short_filter.weight'][:, 0, :]
  xp = np.pad(x, ((0, 0), (SHORT_K - 1, 0), (0, 0)))
  uc = sum(xp[:, k:k + L] * w_WxK[:, k] for k in range(SHORT_K)) + sd['short_filter.bias']
  *xs, v = np.split(uc, order + 1, axis=-1)
  f = 'filter_fn.implicit_filter'
  hid = sd['filter_fn.pos_emb.z'][0, :L]
  for i in (0, 2, 4):
    hid = np.sin(sd[f'{f}.{i + 1}.freq'] * (hid @ sd[f'{f}.{i}.weight'].T + sd[f'{f}.{i}.bias']))
  h_LxC = hid @ sd[f'{f}.6.weight'].T
  h_LxC = h_LxC * np.exp(-sd['filter_fn.pos_emb.t'][0, :L] *
                         np.abs(sd['filter_fn.modulation.deltas'][0, 0]))
  k_OxDxL = h_LxC.T.reshape(D, order - 1, L).transpose(1, 0, 2)  # 'l (v o) -> o v l'
  bias_OxD = sd['filter_fn.bias'].reshape(D, order - 1).T
  for o, x_i in enumerate(reversed(xs[1:])):
    v = v * x_i
    conv = np.zeros_like(v)
    for b in range(B):
      for d in range(D):
        conv[b, :, d] = np.convolve(v[b, :, d], k_OxDxL[o, d])[:L]
    v = conv + v * bias_OxD[o]
  return (v * xs[0]) @ sd['out_proj.weight'].T + sd['out_proj.bias']


def _operator(order, learn_pos_emb=False, abstract=True):
  # The import overwrites every Param, so an abstract operator skips the random init, whose
  # eager op-by-op compiles cost seconds per config.
  make = lambda: HyenaOperator(D, _cfg(order, learn_pos_emb), rngs=nnx.Rngs(0))
  return nnx.eval_shape(make) if abstract else make()


def _load(order, sd, learn_pos_emb=False, prefix=''):
  cfg = _cfg(order, learn_pos_emb)
  op = _operator(order, learn_pos_emb)
  safari_import.load_into_operator(op, sd, cfg, prefix=prefix)
  return op


# One compile per shape instead of eager op-by-op dispatch keeps the suite fast.
_apply = nnx.jit(lambda op, u: op(u))


def _inputs(L):
  return np.random.default_rng(1).standard_normal((2, L, D)).astype(np.float32)


@pytest.mark.parametrize('order,learn_pos_emb', [(2, False), (3, True), (3, False)])
@pytest.mark.parametrize('L', [11, L_MAX])
def test_forward_matches_safari_reference(order, learn_pos_emb, L):
  sd = _safari_state_dict(order, perturb_z=learn_pos_emb)
  op = _load(order, sd, learn_pos_emb)
  u = _inputs(L)
  y = _apply(op, jnp.asarray(u))
  want = _safari_forward(sd, u, order)
  assert np.abs(want).max() > 0.1  # A vanishing reference would make the check vacuous.
  chex.assert_trees_all_close(np.asarray(y), want.astype(np.float32), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('order,learn_pos_emb', [(2, False), (3, True)])
def test_param_tree_matches_operator_state(order, learn_pos_emb):
  cfg = _cfg(order, learn_pos_emb)
  params = safari_import.operator_params_from_safari(_safari_state_dict(order), cfg)
  ours = nnx.to_pure_dict(nnx.state(_operator(order, learn_pos_emb), nnx.Param))
  chex.assert_trees_all_equal_shapes_and_dtypes(params, ours)
  sd = _safari_state_dict(order)
  np.testing.assert_array_equal(params['short_kernel'], sd['short_filter.weight'][:, 0, :].T)
  np.testing.assert_array_equal(params['filter']['mlp'][1]['kernel'],
                                sd['filter_fn.implicit_filter.2.weight'].T)
  np.testing.assert_array_equal(params['filter']['omega'],
                                sd['filter_fn.implicit_filter.1.freq'][0])


def test_safetensors_round_trip_with_lm_prefix(tmp_path):
  sd = _safari_state_dict(3)
  other = _safari_state_dict(3, seed=7)
  full = {PREFIX + k: v for k, v in sd.items()}
  # Neighbouring layers and LM weights must be ignored, not mixed in.
  full.update({'backbone.layers.2.mixer.' + k: v for k, v in other.items()})
  full['lm_head.weight'] = np.ones((4, D), np.float32)
  path = str(tmp_path / 'lm.safetensors')
  st_numpy.save_file(full, path)
  loaded = safari_import.load_state_dict(path)
  chex.assert_trees_all_equal(loaded, full)
  op = _load(3, loaded, prefix=PREFIX)
  direct = nnx.to_pure_dict(nnx.state(_load(3, sd), nnx.Param))
  chex.assert_trees_all_equal(nnx.to_pure_dict(nnx.state(op, nnx.Param)), direct)
  u = _inputs(L_MAX)
  chex.assert_trees_all_close(np.asarray(_apply(op, jnp.asarray(u))),
                              _safari_forward(sd, u, 3).astype(np.float32), rtol=1e-4, atol=1e-4)


def test_torch_file_without_torch_says_pip_install(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'torch', None)  # Makes `import torch` raise ImportError.
  with pytest.raises(ImportError, match='pip install torch'):
    safari_import.load_state_dict(str(tmp_path / 'model.pt'))
  with pytest.raises(ValueError, match='unsupported checkpoint extension'):
    safari_import.load_state_dict(str(tmp_path / 'model.npz'))


def _expect_error(sd, match, order=2, learn_pos_emb=False):
  with pytest.raises(safari_import.SafariImportError, match=match) as err:
    _load(order, sd, learn_pos_emb)
  assert '\n' not in str(err.value)


def test_missing_key_is_named():
  sd = _safari_state_dict(2)
  del sd['filter_fn.implicit_filter.4.bias']
  del sd['filter_fn.pos_emb.t']  # A recomputed buffer may be absent.
  _expect_error(sd, r'missing safari keys: filter_fn\.implicit_filter\.4\.bias$')


def test_unexpected_key_is_named():
  sd = _safari_state_dict(2)
  sd['ord_proj_w'] = np.zeros((2, 1, 1), np.float32)  # safari post_order_ffn=True.
  _expect_error(sd, r'unexpected safari keys .*ord_proj_w')


def test_wrong_shape_names_key_and_shapes():
  sd = _safari_state_dict(2)
  sd['in_proj.weight'] = sd['in_proj.weight'][:, :-1]
  _expect_error(sd, r'in_proj\.weight: expected \(24, 8\), got \(24, 7\)')


def test_num_heads_shows_up_as_shape_mismatch():
  sd = _safari_state_dict(2)
  # safari num_heads=2 halves the filter channels (head_dim * (order - 1)).
  sd['filter_fn.bias'] = sd['filter_fn.bias'][:D // 2]
  sd['filter_fn.implicit_filter.6.weight'] = sd['filter_fn.implicit_filter.6.weight'][:D // 2]
  sd['filter_fn.modulation.deltas'] = sd['filter_fn.modulation.deltas'][..., :D // 2]
  _expect_error(sd, r'filter_fn\.bias: expected \(8,\), got \(4,\).*num_heads')


def test_trained_z_needs_learn_pos_emb():
  sd = _safari_state_dict(2, perturb_z=True)
  _expect_error(sd, r'filter_fn\.pos_emb\.z differs .*learn_pos_emb=True')


def test_other_decay_settings_rejected():
  sd = _safari_state_dict(2)
  sd['filter_fn.modulation.deltas'] = sd['filter_fn.modulation.deltas'] * 0.5
  _expect_error(sd, r'filter_fn\.modulation\.deltas differs .*fast_decay_pct')
  sd = _safari_state_dict(2)
  sd['filter_fn.modulation.deltas'] = np.abs(sd['filter_fn.modulation.deltas'])
  _load(2, sd)  # Only |deltas| matters to safari, so unsigned deltas are the same filter.


def test_unshared_sine_frequencies_rejected():
  sd = _safari_state_dict(2)
  sd['filter_fn.implicit_filter.5.freq'] = sd['filter_fn.implicit_filter.5.freq'] + 1.0
  _expect_error(sd, r'filter_fn\.implicit_filter\.5\.freq differs from .*\.1\.freq')


def test_operator_built_from_other_config_rejected():
  op = _operator(2, learn_pos_emb=True)
  with pytest.raises(safari_import.SafariImportError, match=r'filter\.z'):
    safari_import.load_into_operator(op, _safari_state_dict(2), _cfg(2))


def test_load_changes_every_param():
  sd = _safari_state_dict(3)
  op = _operator(3, abstract=False)
  before = nnx.to_pure_dict(nnx.state(op, nnx.Param))
  safari_import.load_into_operator(op, sd, _cfg(3))
  after = nnx.to_pure_dict(nnx.state(op, nnx.Param))
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), before, after)
  assert all(jax.tree.leaves(changed)), changed
