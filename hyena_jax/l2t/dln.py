"""The Dynamic Loss Network and the DLN-weighted student loss.

DLN_phi: standardised per-token features (B, L, 5) -> GRU -> MLP on the last hidden state ->
sigmoid -> clip to [w_min, w_max]: one weight w_b per sequence. The student's loss is
  L_b = (1 - w_b) * CE_b + w_b * lam * mean_{t,v}(z_btv^2)
with CE_b the sequence's mean cross-entropy and z the logits over the true vocabulary.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from hyena_jax.l2t import features


class DLN(nnx.Module):

  def __init__(self, hidden: int = 64, *, w_min: float = 0.05, w_max: float = 0.95,
               rngs: nnx.Rngs):
    # A bare cell scanned by hand: nnx.RNN keeps its carry as module state, which would make
    # the DLN impure under the meta-gradient's transforms.
    self.cell = nnx.GRUCell(features.NUM_FEATURES, hidden, rngs=rngs)
    self.hidden = hidden
    self.fc1 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, 1, rngs=rngs)
    self.w_min, self.w_max = w_min, w_max

  def __call__(self, f_BxLxF: jax.Array) -> jax.Array:
    """(B,) weights in [w_min, w_max] from standardised features."""
    h0_BxH = jnp.zeros((f_BxLxF.shape[0], self.hidden), jnp.float32)
    step = lambda h, f_BxF: (self.cell(h, f_BxF)[0], None)
    h_BxH, _ = jax.lax.scan(step, h0_BxH, jnp.swapaxes(f_BxLxF, 0, 1))
    out_B = self.fc2(jax.nn.gelu(self.fc1(h_BxH)))[:, 0]
    return jnp.clip(jax.nn.sigmoid(out_B), self.w_min, self.w_max)


def per_sequence_terms(logits_BxLxV: jax.Array, targets_BxL: jax.Array,
                       vocab_size: int) -> tuple[jax.Array, jax.Array]:
  """(CE_b, R_b): mean cross-entropy and mean squared logit of each sequence (float32)."""
  z = logits_BxLxV[..., :vocab_size].astype(jnp.float32)
  ce_B = optax.softmax_cross_entropy_with_integer_labels(z, targets_BxL).mean(axis=1)
  reg_B = jnp.mean(z**2, axis=(1, 2))
  return ce_B, reg_B


def weighted_loss(ce_B: jax.Array, reg_B: jax.Array, w_B: jax.Array, lam: float) -> jax.Array:
  """Batch mean of (1 - w_b) CE_b + w_b lam R_b."""
  return jnp.mean((1.0 - w_B) * ce_B + w_B * lam * reg_B)
