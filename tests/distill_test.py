"""Scavenging Hyena student construction and distillation losses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hyena_jax import config_lib, ops
from hyena_jax.distill import losses, student as student_lib
from hyena_jax.models import LM

D, H, L, V = 16, 2, 12, 40


def teacher_cfg(**kw):
  m = config_lib.base_config().model
  m.update(mixer='attention', d_model=D, n_layer=3, d_inner=32, vocab_size=V, l_max=L,
           residual='parallel', gelu='exact', tie_embeddings=False, embed_dropout=0.0, **kw)
  m.attention.update(num_heads=H, rotary_pct=0.5)
  return m


def make(attention_init=False):
  teacher = LM(teacher_cfg(), rngs=nnx.Rngs(0))
  scfg = student_lib.student_config(teacher_cfg(), {'emb_dim': 5})
  student = student_lib.build_student(teacher, scfg, rngs=nnx.Rngs(1),
                                      attention_init=attention_init)
  tokens = jax.random.randint(jax.random.PRNGKey(2), (2, L), 0, V)
  return teacher, student, tokens


def test_copied_parts_equal_the_teacher_and_mixers_are_hyena():
  teacher, student, _ = make()
  assert type(student.blocks[0].mixer).__name__ == 'HyenaOperator'
  np.testing.assert_array_equal(student.embed.embedding[...], teacher.embed.embedding[...])
  np.testing.assert_array_equal(student.head.embedding[...], teacher.head.embedding[...])
  for sb, tb in zip(student.blocks, teacher.blocks):
    np.testing.assert_array_equal(sb.mlp.fc1.kernel[...], tb.mlp.fc1.kernel[...])
    np.testing.assert_array_equal(sb.ln2.scale[...], tb.ln2.scale[...])
  # Copies, not views: changing the student leaves the teacher alone.
  student.embed.embedding[...] = student.embed.embedding[...] + 1.0
  assert not np.allclose(student.embed.embedding[...], teacher.embed.embedding[...])


def test_attention_init_gates_are_the_teachers_q_k_v():
  teacher, student, tokens = make(attention_init=True)
  x = teacher.embed_tokens(tokens)
  tb, sb = teacher.blocks[0], student.blocks[0]
  u = tb.ln1(x)
  qkv = tb.mixer.qkv(u).reshape(2, L, H, 3 * (D // H))
  q, k, v = (a.reshape(2, L, D) for a in jnp.split(qkv, 3, axis=-1))
  z = ops.causal_depthwise_conv(sb.mixer.in_proj(u), sb.mixer.short_kernel[...],
                                sb.mixer.short_bias[...])
  x0, x1, vv = jnp.split(z, 3, axis=-1)
  for got, want in ((x0, q), (x1, k), (vv, v)):
    np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_array_equal(sb.mixer.out_proj.kernel[...], tb.mixer.out_proj.kernel[...])


def test_deinterleave_matches_the_per_head_layout():
  w = jnp.arange(2 * 3 * H * 4).reshape(2, H * 3 * 4)  # (D_in=2, H heads x {q,k,v} x 4)
  q, k, v = student_lib.deinterleave_qkv(w, H)
  np.testing.assert_array_equal(q[:, :4], w[:, 0:4])
  np.testing.assert_array_equal(k[:, :4], w[:, 4:8])
  np.testing.assert_array_equal(q[:, 4:8], w[:, 12:16])  # head 1's q follows head 0's v


def test_param_labels_freeze_all_but_the_mixers_or_one_layer():
  _, student, _ = make()
  params = nnx.state(student, nnx.Param)
  flat = lambda t: {'/'.join(map(str, k)): (v.get_value() if hasattr(v, 'get_value') else v)
                    for k, v in nnx.to_flat_state(t)}
  all_mix = flat(student_lib.param_labels(params, freeze_copied=True))
  assert {n for n, lab in all_mix.items() if lab == 'train'} == {
      n for n in all_mix if '/mixer/' in n}
  one = flat(student_lib.param_labels(params, freeze_copied=True, layer=1))
  assert {n for n, lab in one.items() if lab == 'train'} == {
      n for n in one if n.startswith('blocks/1/mixer/')}
  assert set(flat(student_lib.param_labels(params, freeze_copied=False)).values()) == {'train'}


def test_teacher_forced_loss_is_the_mean_of_per_layer_mses_by_hand():
  teacher, student, tokens = make()
  hid, mixed, _ = losses.teacher_activations(teacher, tokens)
  loss, mse = losses.layer_match_loss(student, hid, mixed, tokens, mode='teacher_forced')
  want = [float(jnp.mean((b.mixer(b.ln1(hid[l])) - mixed[l])**2))
          for l, b in enumerate(student.blocks)]
  np.testing.assert_allclose(mse, want, rtol=1e-5)
  np.testing.assert_allclose(loss, np.mean(want), rtol=1e-5)
  # The teacher's own mixer outputs reproduce its forward: h_{l+1} from h_l.
  logits = teacher(tokens)
  np.testing.assert_allclose(losses.teacher_activations(teacher, tokens)[2], logits, atol=1e-5)


def test_cumulative_phase_trains_only_its_layer_and_agrees_at_layer_zero():
  teacher, student, tokens = make()
  hid, mixed, _ = losses.teacher_activations(teacher, tokens)
  graphdef, params = nnx.split(student, nnx.Param)

  def grads(mode, layer):
    f = lambda p: losses.layer_match_loss(nnx.merge(graphdef, p), hid, mixed, tokens,
                                          mode=mode, layer=layer)[0]
    return jax.grad(f)(params)

  g = {'/'.join(map(str, k)): v for k, v in nnx.to_flat_state(grads('cumulative', 1))}
  nonzero = {n for n, v in g.items() if float(jnp.abs(v).max()) > 0}
  assert nonzero and all(n.startswith('blocks/1/') for n in nonzero), nonzero
  assert any('/mixer/' in n for n in nonzero)
  l0 = [losses.layer_match_loss(student, hid, mixed, tokens, mode=m, layer=0)[0]
        for m in losses.MODES]
  np.testing.assert_allclose(l0[0], l0[1], rtol=1e-6)  # same input at layer 0: the embedding
  # Above layer 0 the inputs differ (the student's stream is not the teacher's).
  l2 = [losses.layer_match_loss(student, hid, mixed, tokens, mode=m, layer=2)[0]
        for m in losses.MODES]
  assert abs(float(l2[0]) - float(l2[1])) > 1e-4 * float(l2[1])


def test_layer_matching_steps_reduce_the_mse():
  teacher, student, tokens = make(attention_init=True)
  hid, mixed, _ = losses.teacher_activations(teacher, tokens)
  graphdef, params = nnx.split(student, nnx.Param)
  labels = student_lib.param_labels(params, freeze_copied=True)
  tx = optax.multi_transform({'train': optax.adam(3e-3), 'frozen': optax.set_to_zero()}, labels)
  opt = tx.init(params)
  f = lambda p: losses.layer_match_loss(nnx.merge(graphdef, p), hid, mixed, tokens,
                                        mode='teacher_forced')[0]

  @jax.jit
  def step(p, o):
    loss, g = jax.value_and_grad(f)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  first = None
  for _ in range(30):
    params, opt, loss = step(params, opt)
    first = loss if first is None else first
  assert float(f(params)) < 0.5 * float(first)


def test_e2e_loss_is_ce_plus_scaled_kl():
  s = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7))
  t = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 7))
  y = jax.random.randint(jax.random.PRNGKey(2), (2, 5), 0, 7)
  ce, parts = losses.e2e_loss(s, y)
  np.testing.assert_allclose(ce, optax.softmax_cross_entropy_with_integer_labels(s, y).mean())
  same, p = losses.e2e_loss(s, y, s, kl_weight=1.0)
  np.testing.assert_allclose(p['kl'], 0.0, atol=1e-6)
  T = 2.0
  total, p = losses.e2e_loss(s, y, t, kl_weight=0.5, temperature=T)
  pt, ps = jax.nn.softmax(t / T), jax.nn.softmax(s / T)
  kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
  np.testing.assert_allclose(p['kl'], kl, rtol=1e-5)
  np.testing.assert_allclose(total, ce + 0.5 * T * T * kl, rtol=1e-5)


def test_bad_inputs_are_errors():
  teacher, student, tokens = make()
  hid, mixed, _ = losses.teacher_activations(teacher, tokens)
  with pytest.raises(ValueError, match='mode'):
    losses.layer_match_loss(student, hid, mixed, tokens, mode='bottom_up')
  with pytest.raises(ValueError, match='layer=3'):
    losses.layer_match_loss(student, hid, mixed, tokens, mode='cumulative', layer=3)
  bad = student_lib.student_config(teacher_cfg(), {'order': 3})
  with pytest.raises(ValueError, match='order=2'):
    student_lib.build_student(teacher, bad, rngs=nnx.Rngs(0), attention_init=True)
