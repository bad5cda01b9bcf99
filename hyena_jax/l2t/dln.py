"""The Dynamic Loss Network and the DLN-weighted student loss.

DLN_phi: standardised per-token features (B, L, 5) -> GRU -> MLP (+ a linear skip, as the
paper's code) on the last hidden state -> sigmoid -> clip to [w_min, w_max]: one weight w_b
per sequence. The student's loss is
  L_b = (1 - w_b) * CE_b + w_b * lam * mean_{t,v}(z_btv^2)
with CE_b the sequence's mean cross-entropy and z the logits over the true vocabulary.
The paper's code puts a BatchNorm after the GRU; the GRU state is already bounded in
[-1, 1] and batch statistics would make w_b depend on the other sequences, so there is none.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from hyena_jax.l2t import features
from hyena_jax.ops import f32


class DLN(nnx.Module):

  def __init__(self, hidden: int = 64, mlp_width: int = 256, mlp_layers: int = 2, *,
               w_min: float = 0.05, w_max: float = 0.95, rngs: nnx.Rngs):
    # A bare cell scanned by hand: nnx.RNN keeps its carry as module state, which would make
    # the DLN impure under the meta-gradient's transforms.
    self.cell = nnx.GRUCell(features.NUM_FEATURES, hidden, rngs=rngs)
    self.hidden = hidden
    widths = [hidden] + [mlp_width] * mlp_layers
    self.mlp = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    # Zero-initialised heads: w starts at sigmoid(0) = 0.5 for every sequence, as the
    # paper's code does in expectation, and the teacher moves it from there.
    zeros = nnx.initializers.zeros_init()
    self.out = nnx.Linear(widths[-1], 1, kernel_init=zeros, rngs=rngs)
    self.skip = nnx.Linear(hidden, 1, kernel_init=zeros, rngs=rngs)
    self.w_min, self.w_max = w_min, w_max

  def raw(self, f_BxLxF: jax.Array) -> jax.Array:
    """(B,) pre-sigmoid outputs."""
    h0_BxH = jnp.zeros((f_BxLxF.shape[0], self.hidden), f32(f_BxLxF).dtype)
    step = lambda h, f_BxF: (self.cell(h, f_BxF)[0], None)
    h_BxH, _ = jax.lax.scan(step, h0_BxH, jnp.swapaxes(f_BxLxF, 0, 1))
    x = h_BxH
    for layer in self.mlp:
      x = jax.nn.gelu(layer(x))
    return (self.out(x) + self.skip(h_BxH))[:, 0]

  def __call__(self, f_BxLxF: jax.Array, clip: bool = True) -> jax.Array:
    """(B,) weights, in [w_min, w_max] unless `clip=False` (the paper's memory path)."""
    w_B = jax.nn.sigmoid(self.raw(f_BxLxF))
    return jnp.clip(w_B, self.w_min, self.w_max) if clip else w_B


def per_sequence_terms(logits_BxLxV: jax.Array, targets_BxL: jax.Array,
                       vocab_size: int) -> tuple[jax.Array, jax.Array]:
  """(CE_b, R_b): mean cross-entropy and mean squared logit of each sequence (float32)."""
  z = f32(logits_BxLxV[..., :vocab_size])
  ce_B = optax.softmax_cross_entropy_with_integer_labels(z, targets_BxL).mean(axis=1)
  reg_B = jnp.mean(z**2, axis=(1, 2))
  return ce_B, reg_B


def weighted_loss(ce_B: jax.Array, reg_B: jax.Array, w_B: jax.Array, lam: float) -> jax.Array:
  """Batch mean of (1 - w_b) CE_b + w_b lam R_b."""
  return jnp.mean((1.0 - w_B) * ce_B + w_B * lam * reg_B)
