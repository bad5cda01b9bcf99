"""Scavenging Hyena's student: the teacher (a GPT-NeoX LM of this codebase, or an imported HF
Pythia) with every attention replaced by a Hyena operator.

Embeddings, LayerNorms, MLPs and the head are copied; the Hyena operators are new, or warm-
started from the attention weights (`attention_init`): Hyena's order-2 in_proj (d -> 3d) and
out_proj (d -> d) have exactly the shapes of NeoX's query_key_value and dense. After
de-interleaving the heads, Q -> x_0 (output gate), K -> x_1 (inner gate), V -> v, dense ->
out_proj, so y = out(x_0 * (h * (x_1 * v))) mirrors H3's q * SSM(k * v) (the Mamba-in-the-
Llama attention init; not claimed by the Scavenging Hyena paper, so it is an option).
"""

import copy

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hyena_jax import optim
from hyena_jax.models.lm import LM

TRAIN, FROZEN = 'train', 'frozen'


def student_config(teacher_cfg: ml_collections.ConfigDict,
                   hyena: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """The teacher's model config with mixer='hyena' (and the given hyena settings)."""
  s = copy.deepcopy(teacher_cfg)
  with s.unlocked():
    s.mixer = 'hyena'
    if hyena is not None:
      s.hyena.update(hyena.to_dict() if hasattr(hyena, 'to_dict') else hyena)
  return s


def deinterleave_qkv(kernel_DxF: jax.Array, num_heads: int) -> tuple[jax.Array, ...]:
  """NeoX's per-head (head, {q,k,v}, head_dim) columns -> (Q, K, V), each (..., D) in head order."""
  *lead, F = kernel_DxF.shape
  K = F // (3 * num_heads)
  w = kernel_DxF.reshape(*lead, num_heads, 3, K)
  return tuple(w[..., :, i, :].reshape(*lead, num_heads * K) for i in range(3))


def _copy(dst: nnx.Module, src: nnx.Module) -> None:
  nnx.update(dst, jax.tree.map(jnp.array, nnx.state(src, nnx.Param)))


def build_student(teacher: LM, student_cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs,
                  attention_init: bool = False) -> LM:
  """A new LM(student_cfg) holding the teacher's non-mixer weights (copies, not views)."""
  if student_cfg.mixer != 'hyena':
    raise ValueError(f'student mixer={student_cfg.mixer!r}: the student is a Hyena LM')
  if len(teacher.blocks) != student_cfg.n_layer:
    raise ValueError(f'teacher has {len(teacher.blocks)} blocks, student_cfg.n_layer='
                     f'{student_cfg.n_layer}')
  student = LM(student_cfg, rngs=rngs)
  _copy(student.embed, teacher.embed)
  _copy(student.ln_f, teacher.ln_f)
  if (student.head is None) != (teacher.head is None):
    raise ValueError('teacher and student disagree on tie_embeddings')
  if student.head is not None:
    _copy(student.head, teacher.head)
  for sb, tb in zip(student.blocks, teacher.blocks):
    _copy(sb.ln1, tb.ln1)
    if (sb.mlp is None) != (tb.mlp is None):
      raise ValueError('teacher and student disagree on d_inner (MLP or none)')
    if sb.mlp is not None:
      _copy(sb.ln2, tb.ln2)
      _copy(sb.mlp, tb.mlp)
    if attention_init:
      _attention_init(sb.mixer, tb.mixer)
  return student


def _attention_init(hyena: nnx.Module, attn: nnx.Module) -> None:
  if hyena.order != 2:
    raise ValueError(f'attention_init needs model.hyena.order=2 (in_proj d -> 3d, as qkv); '
                     f'got order {hyena.order}')
  H = attn.num_heads
  hyena.in_proj.kernel[...] = jnp.concatenate(deinterleave_qkv(attn.qkv.kernel[...], H), -1)
  hyena.in_proj.bias[...] = jnp.concatenate(deinterleave_qkv(attn.qkv.bias[...], H), -1)
  hyena.out_proj.kernel[...] = attn.out_proj.kernel[...]
  hyena.out_proj.bias[...] = attn.out_proj.bias[...]
  # An identity short conv (last tap 1): the gates start as exactly the teacher's q, k, v.
  K = hyena.short_kernel.shape[0]
  hyena.short_kernel[...] = jnp.zeros_like(hyena.short_kernel[...]).at[K - 1].set(1.0)
  hyena.short_bias[...] = jnp.zeros_like(hyena.short_bias[...])


def mixer_layer(path) -> int:
  """The block index of a mixer parameter's path; -1 for every other parameter."""
  names = optim._path_names(path)  # pylint: disable=protected-access
  return int(names[names.index('blocks') + 1]) if 'mixer' in names else -1


def param_labels(params, *, freeze_copied: bool, layer: int | None = None):
  """TRAIN / FROZEN per parameter: with freeze_copied only the Hyena mixers train; with
  `layer` only that block's mixer (the progressive stage's phase)."""

  def label(path, _):
    l = mixer_layer(path)
    if l >= 0:
      return TRAIN if layer is None or l == layer else FROZEN
    return FROZEN if (freeze_copied or layer is not None) else TRAIN

  return jax.tree_util.tree_map_with_path(label, params)
