"""Import a safari (HazyResearch/safari) `HyenaOperator` state_dict into our NNX operator.

Our HyenaFilter keeps safari's '(v o)' channel layout, so every weight is a copy or a
transpose. Buffers we recompute instead of storing (t, the decay deltas and a frozen z)
are checked, not loaded: a mismatch means the checkpoint was built with other settings,
and silently using ours would change the function.

Safari settings that leave no trace in the weights (num_blocks, filter `bias=False`,
post-activation) cannot be detected here; num_heads / inner_factor != 1 show up as shape
mismatches and post_order_ffn as an unexpected `ord_proj_w` key.
"""

import os
from typing import Any, Mapping

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx, traverse_util
from safetensors import numpy as st_numpy

from hyena_jax import ops

_ATOL = 1e-5
_FILTER = 'filter_fn.implicit_filter'
_SHAPE_HINT = ('(safari num_heads/inner_factor != 1 are unsupported and show up this way; '
               'otherwise make model.d_model, model.l_max and model.hyena.* match the checkpoint)')


class SafariImportError(ValueError):
  """A state dict that does not fit the operator. The message is one line naming the key."""


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a .safetensors or torch (.pt/.pth/.bin) state dict as float32 numpy arrays."""
  ext = os.path.splitext(path)[1].lower()
  if ext == '.safetensors':
    return {k: np.asarray(v, np.float32) for k, v in st_numpy.load_file(path).items()}
  if ext in ('.pt', '.pth', '.bin'):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError(f'reading {path} needs PyTorch: pip install torch '
                        '(or convert the checkpoint to .safetensors)') from None
    sd = torch.load(path, map_location='cpu', weights_only=True)
    # Lightning checkpoints nest the weights one level down.
    if isinstance(sd, Mapping) and isinstance(sd.get('state_dict'), Mapping):
      sd = sd['state_dict']
    return {k: v.detach().float().cpu().numpy() for k, v in sd.items()
            if isinstance(v, torch.Tensor)}
  raise ValueError(f'unsupported checkpoint extension {ext!r} ({path}); '
                   'expected .safetensors, .pt, .pth or .bin')


def _layer_names(num_inner_mlps: int) -> tuple[list[str], str, list[str]]:
  """Safari's Sequential interleaves Linear and Sin: Linear at even indices, Sin at odd."""
  n = num_inner_mlps + 1
  linears = [f'{_FILTER}.{2 * i}' for i in range(n)]
  freqs = [f'{_FILTER}.{2 * i + 1}.freq' for i in range(n)]
  return linears, f'{_FILTER}.{2 * n}', freqs


def _safari_shapes(cfg: ml_collections.ConfigDict) -> tuple[dict[str, tuple], set[str]]:
  """Expected safari key -> shape, and the keys that may be absent."""
  h = cfg.hyena
  D, L, E, F = cfg.d_model, cfg.l_max, h.emb_dim, h.filter_order
  W, C = (h.order + 1) * D, (h.order - 1) * D
  shapes = {
      'in_proj.weight': (W, D), 'in_proj.bias': (W,),
      'out_proj.weight': (D, D), 'out_proj.bias': (D,),
      'short_filter.weight': (W, 1, h.short_filter_order), 'short_filter.bias': (W,),
      'filter_fn.bias': (C,),
      'filter_fn.pos_emb.z': (1, L, E), 'filter_fn.pos_emb.t': (1, L, 1),
      'filter_fn.modulation.deltas': (1, 1, C),
  }
  linears, out, freqs = _layer_names(h.num_inner_mlps)
  widths = [E] + [F] * len(linears)
  for name, d_in, d_out in zip(linears, widths[:-1], widths[1:]):
    shapes[f'{name}.weight'], shapes[f'{name}.bias'] = (d_out, d_in), (d_out,)
  shapes[f'{out}.weight'] = (C, F)
  shapes.update({k: (1, F) for k in freqs})
  # Buffers we recompute are only checked, so a dict saved without them still loads.
  optional = set(freqs[1:]) | {'filter_fn.pos_emb.t', 'filter_fn.modulation.deltas'}
  if not h.learn_pos_emb:
    optional.add('filter_fn.pos_emb.z')
  return shapes, optional


def _check_close(key: str, got: np.ndarray, want: np.ndarray, why: str) -> None:
  if not np.allclose(got, want, rtol=_ATOL, atol=_ATOL):
    diff = float(np.max(np.abs(got - want)))
    raise SafariImportError(f'{key} differs from ours (max |diff| {diff:.2e}): {why}')


def _check_buffers(sd: dict[str, np.ndarray], cfg: ml_collections.ConfigDict,
                   prefix: str) -> None:
  """Errors if a buffer we recompute (t, |deltas|, frozen z) disagrees with ours."""
  h = cfg.hyena
  z_LxE, t_Lx1 = ops.positional_features(cfg.l_max, h.emb_dim)
  if 'filter_fn.pos_emb.t' in sd:
    _check_close(f'{prefix}filter_fn.pos_emb.t', sd['filter_fn.pos_emb.t'][0], t_Lx1,
                 f'expected linspace(0, 1, l_max={cfg.l_max})')
  if 'filter_fn.pos_emb.z' in sd and not h.learn_pos_emb:
    _check_close(f'{prefix}filter_fn.pos_emb.z', sd['filter_fn.pos_emb.z'][0], z_LxE,
                 'our z is the fixed positional embedding; set model.hyena.learn_pos_emb=True '
                 'to import a trained z')
  # With modulate=False the deltas never reach the output, so they cannot disagree.
  if 'filter_fn.modulation.deltas' in sd and h.modulate:
    decay_C = ops.decay_rates((h.order - 1) * cfg.d_model, h.fast_decay_pct, h.slow_decay_pct,
                              h.decay_target)
    # Safari stores signed deltas and uses only their magnitude.
    _check_close(f'{prefix}filter_fn.modulation.deltas',
                 np.abs(sd['filter_fn.modulation.deltas'][0, 0]), decay_C,
                 f'set model.hyena.fast_decay_pct={h.fast_decay_pct}, '
                 f'slow_decay_pct={h.slow_decay_pct}, decay_target={h.decay_target} to match')


def operator_params_from_safari(state_dict: Mapping[str, Any], model_cfg: ml_collections.ConfigDict,
                                prefix: str = '') -> dict:
  """Maps a safari HyenaOperator state dict to our operator's pure Param dict.

  Args:
    state_dict: safari names -> arrays (numpy or anything np.asarray accepts).
    model_cfg: our model config (`base_config().model`).
    prefix: prepended to every safari name, e.g. 'backbone.layers.3.mixer.' for a whole LM;
      keys outside the prefix are ignored.

  Returns:
    A nested dict shaped like `nnx.state(op, nnx.Param).to_pure_dict()` (float32 numpy).
  """
  h = model_cfg.hyena
  shapes, optional = _safari_shapes(model_cfg)
  sd = {k[len(prefix):]: np.asarray(v, np.float32)
        for k, v in state_dict.items() if k.startswith(prefix)}
  missing = sorted(prefix + k for k in shapes if k not in sd and k not in optional)
  if missing:
    raise SafariImportError(f'missing safari keys: {", ".join(missing)}')
  unexpected = sorted(prefix + k for k in sd if k not in shapes)
  if unexpected:
    raise SafariImportError(f'unexpected safari keys under prefix {prefix!r}: '
                            f'{", ".join(unexpected)}')
  bad = [f'{prefix}{k}: expected {shapes[k]}, got {sd[k].shape}'
         for k in shapes if k in sd and sd[k].shape != shapes[k]]
  if bad:
    raise SafariImportError(f'shape mismatch: {"; ".join(bad)} {_SHAPE_HINT}')
  linears, out, freqs = _layer_names(h.num_inner_mlps)
  for k in freqs[1:]:
    if k in sd and not np.array_equal(sd[k], sd[freqs[0]]):
      raise SafariImportError(f'{prefix}{k} differs from {prefix}{freqs[0]}: safari shares one '
                              'Sin module, so every .freq must be the same tensor')
  _check_buffers(sd, model_cfg, prefix)

  c = np.ascontiguousarray
  filt = {
      'mlp': {i: {'kernel': c(sd[f'{n}.weight'].T), 'bias': sd[f'{n}.bias']}
              for i, n in enumerate(linears)},
      'mlp_out': {'kernel': c(sd[f'{out}.weight'].T)},
      'omega': sd[freqs[0]][0],
      'bias': sd['filter_fn.bias'],
  }
  if h.learn_pos_emb:
    filt['z'] = sd['filter_fn.pos_emb.z'][0]
  return {
      'in_proj': {'kernel': c(sd['in_proj.weight'].T), 'bias': sd['in_proj.bias']},
      'out_proj': {'kernel': c(sd['out_proj.weight'].T), 'bias': sd['out_proj.bias']},
      # Conv1d weight is (W, 1, K) in cross-correlation order, which short_kernel keeps.
      'short_kernel': c(sd['short_filter.weight'][:, 0, :].T),
      'short_bias': sd['short_filter.bias'],
      'filter': filt,
  }


def load_into_operator(op: nnx.Module, state_dict: Mapping[str, Any],
                       model_cfg: ml_collections.ConfigDict, prefix: str = '') -> None:
  """Overwrites op's parameters (in place) with a safari HyenaOperator state dict.

  Every Param is replaced, so op may be abstract (`nnx.eval_shape(lambda: HyenaOperator(...))`)
  to skip a random init.
  """
  params = operator_params_from_safari(state_dict, model_cfg, prefix)
  state = nnx.state(op, nnx.Param)
  ours = traverse_util.flatten_dict(nnx.to_pure_dict(state))
  theirs = traverse_util.flatten_dict(params)
  name = lambda path: '.'.join(map(str, path))
  # A config that differs from the one op was built with would otherwise fail deep in nnx.
  if ours.keys() != theirs.keys():
    diff = sorted(name(p) for p in ours.keys() ^ theirs.keys())
    raise SafariImportError(f'operator params do not match model_cfg (differ at {", ".join(diff)});'
                            ' build the operator from the same config')
  bad = [f'{name(p)}: operator {ours[p].shape}, mapped {v.shape}'
         for p, v in theirs.items() if ours[p].shape != v.shape]
  if bad:
    raise SafariImportError(f'operator/model_cfg shape mismatch: {"; ".join(bad)}')
  cast = {p: jnp.asarray(v, ours[p].dtype) for p, v in theirs.items()}
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(cast))
  nnx.update(op, state)
