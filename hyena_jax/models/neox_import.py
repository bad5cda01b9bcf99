"""Hugging Face GPT-NeoX (Pythia) checkpoints <-> our LM with mixer='attention'.

Our attention's fused qkv keeps NeoX's `query_key_value` row order (head, {q, k, v},
head_dim): both reshape the projection to (B, L, H, 3 * head_dim) and split the last axis.
So every weight is a copy or a transpose ([out, in] -> kernel [in, out]); nothing is
de-interleaved. Buffers HF may store (the causal mask `attention.bias`, `masked_bias`,
`rotary_emb.inv_freq`) are recomputed by us and dropped.

Colab:
  model = neox_import.lm_from_hf('/path/to/pythia-70m')   # a local HF directory
  neox_import.save_hf(model, model_cfg, '/tmp/out')       # GPTNeoXForCausalLM.from_pretrained
"""

import json
import os
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx, traverse_util
from safetensors import numpy as st_numpy
from safetensors import safe_open

from hyena_jax import config_lib
from hyena_jax.models.lm import LM, padded_vocab

# Recomputed from the config, never parameters.
_BUFFER = re.compile(r'(\.attention\.(bias|masked_bias)|rotary_emb\.(original_)?inv_freq)$')
_GELU = {'gelu': 'exact', 'gelu_new': 'tanh', 'gelu_pytorch_tanh': 'tanh'}
_HEAD = 'embed_out.weight'


class NeoXImportError(config_lib.ConfigError):
  """A checkpoint or config that does not map onto our LM. One line naming the field or key."""


def _rope(hf: Mapping[str, Any]) -> tuple[float, float]:
  """(rotary_pct, rotary_base) across config.json generations.

  transformers 5 writes rope_parameters {partial_rotary_factor, rope_theta, rope_type} and,
  like HF, a rope_scaling dict takes its place; older files have rotary_pct/rotary_emb_base.
  """
  rp = hf.get('rope_scaling') or hf.get('rope_parameters') or {}
  kind = rp.get('rope_type', rp.get('type', 'default'))
  if kind != 'default':
    raise NeoXImportError(f'rope_type={kind!r} (rope scaling) is unsupported; only default '
                          'rotary embeddings are implemented')
  pct = rp.get('partial_rotary_factor', hf.get('partial_rotary_factor', hf.get('rotary_pct', 0.25)))
  base = rp.get('rope_theta', hf.get('rope_theta', hf.get('rotary_emb_base', 10000.0)))
  return float(pct), float(base)


def model_config(hf: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Our `model` config for an HF GPT-NeoX config.json dict (HF's defaults where absent)."""
  if hf.get('model_type', 'gpt_neox') != 'gpt_neox':
    raise NeoXImportError(f'model_type={hf["model_type"]!r}: only gpt_neox is supported')
  act = hf.get('hidden_act', 'gelu')
  if act not in _GELU:
    raise NeoXImportError(f'hidden_act={act!r} is unsupported; use one of {sorted(_GELU)}')
  if not hf.get('attention_bias', True):
    raise NeoXImportError('attention_bias=false is unsupported: our attention projections '
                          'have biases')
  if hf.get('attention_dropout', 0.0):
    raise NeoXImportError(f'attention_dropout={hf["attention_dropout"]} is unsupported (our '
                          'attention has no dropout); set it to 0')
  D, H = hf['hidden_size'], hf['num_attention_heads']
  if hf.get('head_dim') not in (None, D // H):
    raise NeoXImportError(f'head_dim={hf["head_dim"]} != hidden_size / num_attention_heads = '
                          f'{D // H} is unsupported')
  pct, base = _rope(hf)
  m = config_lib.base_config().model
  m.mixer = 'attention'
  m.d_model, m.n_layer, m.d_inner = D, hf['num_hidden_layers'], hf['intermediate_size']
  # HF's vocab_size already counts padding rows, and HF scores them all: no masking.
  m.vocab_size, m.pad_vocab_to = hf['vocab_size'], 1
  m.l_max = hf.get('max_position_embeddings', 2048)
  m.layer_norm_eps = hf.get('layer_norm_eps', 1e-5)
  m.residual = 'parallel' if hf.get('use_parallel_residual', True) else 'sequential'
  m.gelu = _GELU[act]
  m.tie_embeddings = bool(hf.get('tie_word_embeddings', False))
  m.embed_dropout = m.resid_dropout = float(hf.get('hidden_dropout', 0.0))
  m.attention.update(num_heads=H, rotary_pct=pct, rotary_base=base)
  return m


def hf_config(m: ml_collections.ConfigDict) -> dict[str, Any]:
  """config.json for our model cfg; NeoXImportError if HF cannot express it exactly."""
  if m.mixer != 'attention':
    raise NeoXImportError(f'model.mixer={m.mixer!r}: only attention models export to GPT-NeoX')
  if m.d_inner <= 0:
    raise NeoXImportError('model.d_inner=0 (blocks without an MLP) has no GPT-NeoX form')
  V = padded_vocab(m)
  if V != m.vocab_size:
    raise NeoXImportError(f'model.vocab_size={m.vocab_size} is padded to {V} rows, which we '
                          f'mask and HF would score; export needs vocab_size={V} or '
                          'pad_vocab_to=1')
  a = m.attention
  return {
      'architectures': ['GPTNeoXForCausalLM'], 'model_type': 'gpt_neox', 'dtype': 'float32',
      'vocab_size': V, 'hidden_size': m.d_model, 'num_hidden_layers': m.n_layer,
      'num_attention_heads': a.num_heads, 'intermediate_size': m.d_inner,
      'hidden_act': 'gelu' if m.gelu == 'exact' else 'gelu_new',
      'max_position_embeddings': m.l_max, 'layer_norm_eps': m.layer_norm_eps,
      'use_parallel_residual': m.residual == 'parallel',
      'tie_word_embeddings': m.tie_embeddings, 'attention_bias': True,
      'attention_dropout': 0.0, 'hidden_dropout': m.resid_dropout,
      # Both spellings: transformers 5 reads rope_parameters, 4.x rotary_pct/rotary_emb_base.
      'rope_parameters': {'rope_type': 'default', 'partial_rotary_factor': a.rotary_pct,
                          'rope_theta': a.rotary_base},
      'rotary_pct': a.rotary_pct, 'rotary_emb_base': a.rotary_base,
      'initializer_range': 0.02, 'use_cache': True,
  }


def _names(m: ml_collections.ConfigDict) -> list[tuple[tuple, str, bool]]:
  """(our Param path, HF name, transposed) for every parameter of the LM."""
  ln = lambda ours, theirs: [(ours + ('scale',), theirs + '.weight', False),
                             (ours + ('bias',), theirs + '.bias', False)]
  dense = lambda ours, theirs: [(ours + ('kernel',), theirs + '.weight', True),
                                (ours + ('bias',), theirs + '.bias', False)]
  rows = [(('embed', 'embedding'), 'gpt_neox.embed_in.weight', False)]
  for i in range(m.n_layer):
    b, p = ('blocks', i), f'gpt_neox.layers.{i}.'
    rows += ln(b + ('ln1',), p + 'input_layernorm')
    rows += dense(b + ('mixer', 'qkv'), p + 'attention.query_key_value')
    rows += dense(b + ('mixer', 'out_proj'), p + 'attention.dense')
    if m.d_inner:
      rows += ln(b + ('ln2',), p + 'post_attention_layernorm')
      rows += dense(b + ('mlp', 'fc1'), p + 'mlp.dense_h_to_4h')
      rows += dense(b + ('mlp', 'fc2'), p + 'mlp.dense_4h_to_h')
  rows += ln(('ln_f',), 'gpt_neox.final_layer_norm')
  if not m.tie_embeddings:
    rows.append((('head', 'embedding'), _HEAD, False))
  return rows


def _abstract_params(m: ml_collections.ConfigDict) -> dict:
  abstract = nnx.eval_shape(lambda: LM(m, rngs=nnx.Rngs(0)))
  return traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))


def params_from_hf(state_dict: Mapping[str, Any], m: ml_collections.ConfigDict) -> dict:
  """HF names -> our LM's pure Param dict (nested, float32 numpy), checked against `m`."""
  sd = {k: v for k, v in state_dict.items() if not _BUFFER.search(k)}
  if 'lm_head.weight' in sd and _HEAD not in sd:  # transformers 5's in-memory name.
    sd[_HEAD] = sd.pop('lm_head.weight')
  if m.tie_embeddings and _HEAD in sd:
    # A tied model reads its head from embed_in; a different stored head would be dropped.
    if not np.array_equal(np.asarray(sd[_HEAD]), np.asarray(sd['gpt_neox.embed_in.weight'])):
      raise NeoXImportError(f'tie_word_embeddings=true but {_HEAD} differs from '
                            'gpt_neox.embed_in.weight')
    del sd[_HEAD]
  rows = _names(m)
  missing = sorted(n for _, n, _ in rows if n not in sd)
  if missing:
    raise NeoXImportError(f'missing GPT-NeoX keys: {", ".join(missing)}')
  unexpected = sorted(set(sd) - {n for _, n, _ in rows})
  if unexpected:
    raise NeoXImportError(f'unexpected GPT-NeoX keys: {", ".join(unexpected)}')
  shapes = _abstract_params(m)
  flat, bad = {}, []
  for path, name, transposed in rows:
    v = np.asarray(sd[name], np.float32)
    v = np.ascontiguousarray(v.T) if transposed else v
    if v.shape != shapes[path].shape:
      want = shapes[path].shape[::-1] if transposed else shapes[path].shape
      bad.append(f'{name}: expected {want}, got {np.shape(sd[name])}')
    flat[path] = v
  if bad:
    raise NeoXImportError(f'shape mismatch: {"; ".join(bad)}')
  return traverse_util.unflatten_dict(flat)


def hf_state_dict(params, m: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Our LM's params (LM, nnx.State or pure dict) -> HF names, float32 numpy."""
  if isinstance(params, nnx.Module):
    params = nnx.state(params, nnx.Param)
  if isinstance(params, nnx.State):
    params = nnx.to_pure_dict(params)
  flat = traverse_util.flatten_dict(params)
  rows = _names(m)
  if set(flat) != {p for p, _, _ in rows}:
    diff = sorted('.'.join(map(str, p)) for p in set(flat) ^ {p for p, _, _ in rows})
    raise NeoXImportError(f'params do not match the model config (differ at {", ".join(diff)})')
  return {name: np.ascontiguousarray(np.asarray(flat[path], np.float32).T if t
                                     else np.asarray(flat[path], np.float32))
          for path, name, t in rows}


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(f'reading {path} needs PyTorch: pip install torch (or convert the '
                      'checkpoint to model.safetensors)') from None
  sd = torch.load(path, map_location='cpu', weights_only=True)
  return {k: v.detach().float().numpy() for k, v in sd.items() if isinstance(v, torch.Tensor)}


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  # The flax backend reads bfloat16, which numpy's cannot.
  with safe_open(path, framework='flax') as f:
    return {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Every tensor of an HF checkpoint directory: model.safetensors (preferred), else
  pytorch_model.bin (torch, weights_only=True); sharded `*.index.json` forms too."""
  for name, read in (('model.safetensors', _read_safetensors), ('pytorch_model.bin', _read_torch)):
    if os.path.isfile(os.path.join(path, name)):
      return read(os.path.join(path, name))
    index = os.path.join(path, name + '.index.json')
    if os.path.isfile(index):
      with open(index) as f:
        shards = sorted(set(json.load(f)['weight_map'].values()))
      return {k: v for s in shards for k, v in read(os.path.join(path, s)).items()}
  raise FileNotFoundError(f'{path}: no model.safetensors or pytorch_model.bin (nor a sharded '
                          '.index.json of either)')


def load_hf(path: str) -> tuple[ml_collections.ConfigDict, nnx.State]:
  """(our model cfg, the LM's Param state) from a local HF GPT-NeoX directory.

  The state is what `nnx.state(LM(cfg, ...), nnx.Param)` holds, so
  `nnx.merge(graphdef, state)` or a trainer's `params` can take it.
  """
  with open(os.path.join(path, 'config.json')) as f:
    m = model_config(json.load(f))
  params = params_from_hf(load_state_dict(path), m)
  state = nnx.state(nnx.eval_shape(lambda: LM(m, rngs=nnx.Rngs(0))), nnx.Param)
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
  return m, state


def lm_from_hf(path: str, dtype: str = 'float32') -> LM:
  """An LM with the weights of a local HF GPT-NeoX directory; `dtype` is the compute dtype
  (params stay float32)."""
  m, state = load_hf(path)
  m.dtype = dtype
  # Abstract, so no random init is computed only to be overwritten.
  model = nnx.eval_shape(lambda: LM(m, rngs=nnx.Rngs(0)))
  nnx.update(model, state)
  return model


def save_hf(model_or_params, m: ml_collections.ConfigDict, out_dir: str) -> None:
  """Writes config.json + model.safetensors that GPTNeoXForCausalLM.from_pretrained loads.

  model_or_params: an LM, its nnx.State of Params, or their pure dict; `m` its model cfg (or
  a full config with `.model`).
  """
  m = m.model if 'model' in m else m
  config = hf_config(m)
  tensors = hf_state_dict(model_or_params, m)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'config.json'), 'w') as f:
    json.dump(config, f, indent=2)
  # HF refuses safetensors without format metadata.
  st_numpy.save_file(tensors, os.path.join(out_dir, 'model.safetensors'), metadata={'format': 'pt'})
