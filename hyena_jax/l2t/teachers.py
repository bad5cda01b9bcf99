"""The two teachers of the DLN.

`paper` mode (the official L2T-Hyena code's mechanism): a small MLP teacher predicts the
student's standardised per-sequence loss from the DLN weight, on sequences drawn from a ring
buffer memory of past features and losses; the DLN is trained through that prediction.

`meta` mode with `teacher='lstm'` (L2T-DLN's mechanism): a coordinatewise LSTM turns the
preprocessed meta-gradient of every DLN parameter, plus the student's held-out loss history,
into that parameter's update; its (h, c) is the teacher's memory.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx


# ----------------------------------------------------------------------------- paper mode

class MemoryTeacher(nnx.Module):
  """MLP(1 -> width -> width -> 1, GELU) from w to the predicted standardised loss."""

  def __init__(self, width: int = 128, out_bias: float = 15.0, *, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(1, width, rngs=rngs)
    self.fc2 = nnx.Linear(width, width, rngs=rngs)
    # 15.0 is the official code's initial output bias; its targets are z-scores, so
    # the Huber loss starts deep in its linear regime (see the README).
    self.fc3 = nnx.Linear(width, 1, bias_init=nnx.initializers.constant(out_bias), rngs=rngs)

  def __call__(self, w_B: jax.Array) -> jax.Array:
    x = jax.nn.gelu(self.fc1(w_B[:, None]))
    return self.fc3(jax.nn.gelu(self.fc2(x)))[:, 0]


def memory_init(size: int, seq_len: int, num_features: int) -> dict:
  return {'features': jnp.zeros((size, seq_len, num_features), jnp.float32),
          'ce': jnp.zeros((size,), jnp.float32),
          'count': jnp.zeros((), jnp.int32), 'pos': jnp.zeros((), jnp.int32)}


def memory_write(mem: dict, f_BxLxF: jax.Array, ce_B: jax.Array) -> dict:
  """Ring buffer: the batch overwrites the oldest entries."""
  size, B = mem['ce'].shape[0], ce_B.shape[0]
  idx = (mem['pos'] + jnp.arange(B)) % size
  return {'features': mem['features'].at[idx].set(f_BxLxF.astype(jnp.float32)),
          'ce': mem['ce'].at[idx].set(ce_B.astype(jnp.float32)),
          'count': jnp.minimum(mem['count'] + B, size), 'pos': (mem['pos'] + B) % size}


def memory_sample(mem: dict, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  """n entries with replacement, favouring high-loss sequences as the official code does:
  p ~ 0.5 softmax(ce / 2) + 0.5 / count + U(0, 0.1), over the filled entries."""
  k_noise, k_pick = jax.random.split(key)
  size = mem['ce'].shape[0]
  filled = jnp.arange(size) < mem['count']
  soft = jax.nn.softmax(jnp.where(filled, mem['ce'] / 2.0, -jnp.inf))
  p = 0.5 * soft + 0.5 / jnp.maximum(mem['count'], 1) + jax.random.uniform(k_noise, (size,),
                                                                          maxval=0.1)
  p = jnp.where(filled, p, 0.0)
  idx = jax.random.choice(k_pick, size, (n,), replace=True, p=p / p.sum())
  return mem['features'][idx], mem['ce'][idx]


def paper_side_loss(dln, teacher: MemoryTeacher, f_NxLxF: jax.Array, ce_N: jax.Array
                    ) -> tuple[jax.Array, dict]:
  """teacher_loss + dln_loss of the official code (one joint objective for both nets)."""
  raw_N = dln.raw(f_NxLxF)
  w_N = jax.nn.sigmoid(raw_N)  # The official memory path: no clamp.
  target_N = (ce_N - ce_N.mean()) / (ce_N.std() + 1e-6)
  huber = optax.huber_loss(teacher(w_N), target_N, delta=1.0).mean()
  # safe_norm: the zero-initialised biases would give sqrt's infinite slope at 0 (NaN).
  l2 = sum(optax.safe_norm(p, 1e-12) for p in jax.tree.leaves(nnx.state(teacher, nnx.Param)))
  teacher_loss = huber + 0.01 * l2
  dln_loss = (huber + 1e-3 * jnp.mean(w_N**2) + 0.5 * jnp.mean(jnp.tanh(raw_N / 5.0)**2)
              - 2.0 * jnp.var(w_N) + jax.nn.relu(raw_N.mean() - 1.0)**2)
  return teacher_loss + dln_loss, {'teacher_huber': huber, 'teacher_loss': teacher_loss,
                                   'dln_loss': dln_loss}


# ------------------------------------------------------------------ meta mode, LSTM teacher

HISTORY = 4           # Held-out losses the LSTM teacher sees.
NUM_INPUTS = 2 + 3    # Preprocessed gradient (2) + loss-history features (3).


def preprocess(g_P: jax.Array, p: float = 10.0) -> jax.Array:
  """L2T-DLN / Andrychowicz et al. gradient preprocessing: (P,) -> (P, 2)."""
  big = jnp.abs(g_P) >= jnp.exp(-p)
  a = jnp.where(big, jnp.log(jnp.abs(g_P) + 1e-8) / p, -1.0)
  b = jnp.where(big, jnp.sign(g_P), jnp.exp(p) * g_P)
  return jnp.stack([a, b], axis=-1)


def history_features(history: jax.Array, count: jax.Array, heldout: jax.Array,
                     train_loss: jax.Array) -> jax.Array:
  """(3,) bounded summaries of the student's loss history (zeros before there is any)."""
  last = jnp.where(count > 0, history[-1], heldout)
  n = jnp.clip(count, 1, HISTORY)
  mean = jnp.where(count > 0, jnp.sum(jnp.where(jnp.arange(HISTORY) >= HISTORY - n, history,
                                                0.0)) / n, heldout)
  return jnp.tanh(jnp.stack([heldout - last, heldout - mean, train_loss - heldout]))


def history_push(history: jax.Array, count: jax.Array, loss: jax.Array):
  return jnp.concatenate([history[1:], loss[None]]), count + 1


def lstm_init(key: jax.Array, hidden: int = 16) -> dict:
  k1, k2 = jax.random.split(key)
  scale = 1.0 / jnp.sqrt(NUM_INPUTS + hidden)
  return {'w': jax.random.normal(k1, (NUM_INPUTS + hidden, 4 * hidden)) * scale,
          'b': jnp.zeros((4 * hidden,)).at[hidden:2 * hidden].set(1.0),  # Forget gate open.
          'w_out': jax.random.normal(k2, (hidden,)) * 0.01, 'b_out': jnp.zeros(())}


def lstm_state_init(num_coords: int, hidden: int = 16) -> dict:
  return {'h': jnp.zeros((num_coords, hidden)), 'c': jnp.zeros((num_coords, hidden))}


def lstm_update(psi: dict, hc: dict, g_P: jax.Array, hist_3: jax.Array, lr: float):
  """(delta_P, new hc). delta = -lr (g / rms(g) + LSTM correction): the teacher starts as
  normalised meta-gradient descent and learns a coordinatewise correction on top."""
  g_P = jax.lax.stop_gradient(g_P)
  x = jnp.concatenate([preprocess(g_P), jnp.broadcast_to(hist_3, (g_P.shape[0], 3))], -1)
  gates = jnp.concatenate([x, hc['h']], -1) @ psi['w'] + psi['b'][None]
  i, f, o, u = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * hc['c'] + jax.nn.sigmoid(i) * jnp.tanh(u)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  correction = h @ psi['w_out'] + psi['b_out']
  g_norm = g_P / (jnp.sqrt(jnp.mean(g_P**2)) + 1e-12)
  return -lr * (g_norm + correction), {'h': h, 'c': c}
