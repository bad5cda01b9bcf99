"""GPT-NeoX (Pythia) import/export: parity with transformers' GPTNeoXForCausalLM, errors."""

import json
import sys

import jax
import numpy as np
import pytest
from flax import nnx, traverse_util

from hyena_jax.models import LM, neox_import

# Head dim 16: rotary 0.25 turns 4 dims at 2 frequencies, so rotary_base matters too.
V, D, N_LAYER, HEADS, D_FF, L = 48, 64, 2, 4, 128, 12
TOL = 1e-4  # float32, absolute


def _hf_config(**kw):
  transformers = pytest.importorskip('transformers')
  base = dict(vocab_size=V, hidden_size=D, num_hidden_layers=N_LAYER, num_attention_heads=HEADS,
              intermediate_size=D_FF, rotary_pct=0.25, rotary_emb_base=100.0,
              max_position_embeddings=64, use_parallel_residual=True, tie_word_embeddings=False,
              hidden_act='gelu', layer_norm_eps=1e-5)
  return transformers.GPTNeoXConfig(**{**base, **kw})


def _hf_model(seed=0, **kw):
  """A random GPTNeoXForCausalLM whose weights are large enough that every path matters."""
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  torch.manual_seed(seed)
  model = transformers.GPTNeoXForCausalLM(_hf_config(**kw)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if 'layernorm' in name and name.endswith('weight'):
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      elif p.ndim == 2:
        p.normal_(0.0, 1.5 / p.shape[1] ** 0.5)
      else:
        p.normal_(0.0, 0.2)
  return model


def _hf_forward(model, ids):
  """(logits, residual stream before ln_f as ours returns it) in float32 numpy."""
  torch = pytest.importorskip('torch')
  last = {}
  hook = model.gpt_neox.layers[-1].register_forward_hook(
      lambda mod, args, out: last.update(h=out[0] if isinstance(out, tuple) else out))
  with torch.no_grad():
    out = model(torch.as_tensor(ids), output_hidden_states=True)
  hook.remove()
  # HF's last hidden_states entry is after final_layer_norm; the hook has the one before.
  hidden = [h.numpy() for h in out.hidden_states[:-1]] + [last['h'].numpy()]
  return out.logits.numpy(), hidden, out.hidden_states[-1].numpy()


_forward = nnx.jit(lambda m, t: m(t, return_hidden=True))


def _ids(seed=1):
  return np.random.default_rng(seed).integers(0, V, (2, L)).astype(np.int32)


def _max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.mark.parametrize('parallel,pct,tied,act', [
    (True, 0.25, False, 'gelu'), (False, 0.25, False, 'gelu'),
    (True, 1.0, False, 'gelu'), (False, 1.0, False, 'gelu'),
    (True, 0.25, True, 'gelu_new')])
def test_logits_and_hidden_states_match_hf(tmp_path, parallel, pct, tied, act):
  hf = _hf_model(use_parallel_residual=parallel, rotary_pct=pct, tie_word_embeddings=tied,
                 hidden_act=act)
  hf.save_pretrained(tmp_path)
  model = neox_import.lm_from_hf(str(tmp_path))
  ids = _ids()
  want_logits, want_hidden, want_final = _hf_forward(hf, ids)
  logits, hidden = _forward(model, ids)
  assert np.abs(want_logits).max() > 1.0  # A vanishing reference would make this vacuous.
  assert len(hidden) == N_LAYER + 1
  for i, (h, w) in enumerate(zip(hidden, want_hidden)):
    assert _max_diff(h, w) < TOL, (i, _max_diff(h, w))
  assert _max_diff(model.ln_f(hidden[-1]), want_final) < TOL
  assert _max_diff(logits, want_logits) < TOL, _max_diff(logits, want_logits)


def test_block_qkv_layout_would_be_caught(tmp_path):
  """Negative control: [Q|K|V] blocks instead of NeoX's per-head interleave must not pass."""
  hf = _hf_model(rotary_pct=1.0)
  hf.save_pretrained(tmp_path)
  m, _ = neox_import.load_hf(str(tmp_path))
  sd = neox_import.load_state_dict(str(tmp_path))
  for k in [k for k in sd if 'query_key_value' in k]:
    w = sd[k]  # (head, {q,k,v}, dim) rows -> ({q,k,v}, head, dim) rows.
    sd[k] = w.reshape(HEADS, 3, D // HEADS, *w.shape[1:]).swapaxes(0, 1).reshape(w.shape)
  model = nnx.eval_shape(lambda: LM(m, rngs=nnx.Rngs(0)))
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, neox_import.params_from_hf(sd, m))
  nnx.update(model, state)
  want_logits, _, _ = _hf_forward(hf, _ids())
  assert _max_diff(_forward(model, _ids())[0], want_logits) > 0.1


def _perturbed_lm(m, seed=0):
  """Our LM with random weights at a scale where a wrong mapping shows (init is ~0.02)."""
  model = LM(m, rngs=nnx.Rngs(seed))
  state = nnx.state(model, nnx.Param)
  flat = traverse_util.flatten_dict(nnx.to_pure_dict(state))
  rng = np.random.default_rng(seed)
  new = {p: (np.asarray(v) + rng.normal(0.0, 1.0 / np.sqrt(v.shape[0]) if v.ndim == 2 else 0.2,
                                        v.shape)).astype(np.float32) for p, v in flat.items()}
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(new))
  nnx.update(model, state)
  return model


@pytest.mark.parametrize('residual,gelu,tied', [('parallel', 'exact', False),
                                                ('sequential', 'tanh', True)])
def test_export_round_trip(tmp_path, residual, gelu, tied):
  transformers = pytest.importorskip('transformers')
  pytest.importorskip('torch')
  m = neox_import.model_config(_hf_config().to_dict())
  m.update(residual=residual, gelu=gelu, tie_embeddings=tied)
  model = _perturbed_lm(m)
  neox_import.save_hf(model, m, str(tmp_path))
  hf, info = transformers.GPTNeoXForCausalLM.from_pretrained(str(tmp_path),
                                                             output_loading_info=True)
  assert not any(info[k] for k in ('missing_keys', 'unexpected_keys', 'mismatched_keys')), info
  assert hf.config.use_parallel_residual == (residual == 'parallel')
  hf.eval()
  want_logits, _, _ = _hf_forward(hf, _ids())
  logits, _ = _forward(model, _ids())
  assert np.abs(want_logits).max() > 1.0
  assert _max_diff(logits, want_logits) < TOL, _max_diff(logits, want_logits)
  # And back: the same config and bit-identical parameters.
  m2, state = neox_import.load_hf(str(tmp_path))
  assert m2.to_dict() == m.to_dict()
  ours = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(state), ours)


def test_pytorch_model_bin_with_buffers(tmp_path):
  torch = pytest.importorskip('torch')
  hf = _hf_model(use_parallel_residual=False)
  hf.save_pretrained(tmp_path)
  (tmp_path / 'model.safetensors').unlink()
  sd = dict(hf.state_dict())
  # Old checkpoints store these non-parameter buffers next to the weights.
  for i in range(N_LAYER):
    p = f'gpt_neox.layers.{i}.attention.'
    sd[p + 'bias'] = torch.tril(torch.ones(1, 1, 64, 64, dtype=torch.bool))
    sd[p + 'masked_bias'] = torch.tensor(-1e9)
    sd[p + 'rotary_emb.inv_freq'] = torch.ones(1)
  assert 'lm_head.weight' in sd  # transformers 5's in-memory name for embed_out.
  torch.save(sd, tmp_path / 'pytorch_model.bin')
  model = neox_import.lm_from_hf(str(tmp_path))
  want_logits, _, _ = _hf_forward(hf, _ids())
  assert _max_diff(_forward(model, _ids())[0], want_logits) < TOL


def test_bin_without_torch_says_pip_install(tmp_path, monkeypatch):
  (tmp_path / 'pytorch_model.bin').write_bytes(b'')
  monkeypatch.setitem(sys.modules, 'torch', None)  # Makes `import torch` raise ImportError.
  with pytest.raises(ImportError, match='pip install torch'):
    neox_import.load_state_dict(str(tmp_path))
  (tmp_path / 'pytorch_model.bin').unlink()
  with pytest.raises(FileNotFoundError, match='no model.safetensors'):
    neox_import.load_state_dict(str(tmp_path))


# --- errors (no torch needed: state dicts come from our own export) ---------------------------

HF_TINY = dict(model_type='gpt_neox', vocab_size=V, hidden_size=D, num_hidden_layers=N_LAYER,
               num_attention_heads=HEADS, intermediate_size=D_FF, hidden_act='gelu',
               rotary_pct=0.25, rotary_emb_base=100.0, use_parallel_residual=True,
               tie_word_embeddings=False, layer_norm_eps=1e-5)


def _state_dict(m):
  abstract = nnx.eval_shape(lambda: LM(m, rngs=nnx.Rngs(0)))
  zeros = jax.tree.map(lambda a: np.zeros(a.shape, np.float32),
                       nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))
  return neox_import.hf_state_dict(zeros, m)


def _expect(match, fn, *args):
  with pytest.raises(neox_import.NeoXImportError, match=match) as e:
    fn(*args)
  assert '\n' not in str(e.value)


def test_missing_unexpected_and_misshaped_keys_are_named():
  m = neox_import.model_config(HF_TINY)
  sd = _state_dict(m)
  del sd['gpt_neox.layers.1.mlp.dense_h_to_4h.bias']
  _expect(r'missing GPT-NeoX keys: gpt_neox\.layers\.1\.mlp\.dense_h_to_4h\.bias$',
          neox_import.params_from_hf, sd, m)
  sd = _state_dict(m)
  sd['gpt_neox.layers.0.attention.rotary_emb.inv_freq'] = np.ones(1)  # A buffer: dropped.
  sd['gpt_neox.layers.0.attention.extra.weight'] = np.ones(1)
  _expect(r'unexpected GPT-NeoX keys: gpt_neox\.layers\.0\.attention\.extra\.weight$',
          neox_import.params_from_hf, sd, m)
  sd = _state_dict(m)
  sd['gpt_neox.layers.0.attention.query_key_value.weight'] = np.zeros((3 * D, D - 1))
  _expect(r'query_key_value\.weight: expected \(192, 64\), got \(192, 63\)',
          neox_import.params_from_hf, sd, m)


def test_tied_head_must_equal_the_embedding():
  m = neox_import.model_config({**HF_TINY, 'tie_word_embeddings': True})
  sd = _state_dict(m)
  sd['embed_out.weight'] = sd['gpt_neox.embed_in.weight'].copy()
  neox_import.params_from_hf(sd, m)  # An equal stored head is redundant, not an error.
  sd['embed_out.weight'][0, 0] = 1.0
  _expect('tie_word_embeddings=true but embed_out.weight differs', neox_import.params_from_hf,
          sd, m)


@pytest.mark.parametrize('override,match', [
    ({'hidden_act': 'relu'}, "hidden_act='relu'"),
    ({'attention_bias': False}, 'attention_bias=false'),
    ({'rope_scaling': {'rope_type': 'linear', 'factor': 2.0}}, "rope_type='linear'"),
    ({'rope_parameters': {'rope_type': 'dynamic', 'factor': 2.0}}, "rope_type='dynamic'"),
    ({'attention_dropout': 0.1}, 'attention_dropout=0.1'),
    ({'model_type': 'llama'}, "model_type='llama'"),
])
def test_unsupported_config_is_one_line(override, match):
  _expect(match, neox_import.model_config, {**HF_TINY, **override})


def test_rope_fields_of_every_config_generation():
  old = neox_import.model_config(HF_TINY).attention
  new = {k: v for k, v in HF_TINY.items() if k not in ('rotary_pct', 'rotary_emb_base')}
  new['rope_parameters'] = {'rope_type': 'default', 'partial_rotary_factor': 0.25,
                            'rope_theta': 100.0}
  flat = {**new, 'partial_rotary_factor': 0.25, 'rope_theta': 100.0}
  del flat['rope_parameters']
  for hf in (new, flat):
    assert neox_import.model_config(hf).attention.to_dict() == old.to_dict()
  assert (old.rotary_pct, old.rotary_base) == (0.25, 100.0)


def test_export_refuses_what_neox_cannot_express():
  m = neox_import.model_config(HF_TINY)
  m.pad_vocab_to = 40  # 48 -> 80 rows: padding we mask and HF would score.
  _expect('padded to 80 rows', neox_import.hf_config, m)
  m = neox_import.model_config(HF_TINY)
  m.mixer = 'hyena'
  _expect("model.mixer='hyena'", neox_import.hf_config, m)


def test_pythia_70m_config_json_maps_to_configs_pythia_70m():
  """EleutherAI/pythia-70m's config.json (distill.md §3.1) is our configs/pythia_70m.py."""
  from tests.models_test import load_config  # pylint: disable=g-import-not-at-top
  pythia = {'architectures': ['GPTNeoXForCausalLM'], 'bos_token_id': 0, 'eos_token_id': 0,
            'hidden_act': 'gelu', 'hidden_size': 512, 'initializer_range': 0.02,
            'intermediate_size': 2048, 'layer_norm_eps': 1e-05, 'max_position_embeddings': 2048,
            'model_type': 'gpt_neox', 'num_attention_heads': 8, 'num_hidden_layers': 6,
            'rotary_emb_base': 10000, 'rotary_pct': 0.25, 'tie_word_embeddings': False,
            'torch_dtype': 'float16', 'use_cache': True, 'use_parallel_residual': True,
            'vocab_size': 50304}
  ours = neox_import.model_config(pythia)
  want = load_config('pythia_70m').model
  fields = ('mixer', 'd_model', 'n_layer', 'd_inner', 'vocab_size', 'layer_norm_eps', 'residual',
            'gelu', 'tie_embeddings', 'embed_dropout', 'resid_dropout')
  assert {f: ours[f] for f in fields} == {f: want[f] for f in fields}
  assert ours.attention.to_dict() == want.attention.to_dict()
  # And our config.json for it reads back as the same config.
  back = neox_import.model_config(json.loads(json.dumps(neox_import.hf_config(ours))))
  assert back.to_dict() == ours.to_dict()
