"""Perplexity over a token stream: which windows to run and which of their positions to score.

Target t (1 <= t < N) is stream[t] predicted from stream[start(t):t]. Three modes:
  nonoverlap  windows of length L at 0, L, 2L, ...: every target scored once, context 0..L-1;
  sliding     windows of length L every `stride` tokens; a window scores only its last
              `stride` targets (the first window all of them): every target scored once with
              at least L - stride + 1 tokens of context (past the first window);
  l2t         the L2T-Hyena paper's metric: every window of W tokens at stride 1, every
              position scored. Targets are counted about W times, most with short context;
              the number is NOT comparable to standard perplexity.
"""

from typing import Iterator

import numpy as np

MODES = ('nonoverlap', 'sliding', 'l2t')


def context_start(t: np.ndarray, L: int, stride: int) -> np.ndarray:
  """Where target t's context starts in `sliding` (stride=L: `nonoverlap`); a closed form."""
  t = np.asarray(t, np.int64)
  return np.where(t <= L, 0, stride * -((L - t) // stride))  # stride * ceil((t - L) / stride)


def plan(n_tokens: int, L: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
  """Window starts and, per window, the first scored position (0-based within the window)."""
  if not 1 <= stride <= L:
    raise ValueError(f'stride={stride} must be in [1, seq_len={L}]')
  n_targets = n_tokens - 1
  if n_targets <= 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  n_windows = 1 + max(0, -(-(n_targets - L) // stride))
  starts = np.arange(n_windows, dtype=np.int64) * stride
  first = np.where(starts == 0, 0, L - stride)
  return starts, first


def _pad_batches(inputs, targets, weights, batch_size):
  n = inputs.shape[0]
  for i in range(0, n, batch_size):
    sl = slice(i, min(i + batch_size, n))
    pad = batch_size - (sl.stop - sl.start)
    b = {'inputs': inputs[sl], 'targets': targets[sl], 'acc_mask': weights[sl]}
    if pad:  # Masked filler rows keep every batch the same shape (no recompile).
      b = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in b.items()}
    yield b


def window_batches(stream: np.ndarray, L: int, stride: int,
                   batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """`nonoverlap` (stride = L) or `sliding` batches; acc_mask marks the scored targets."""
  stream = np.asarray(stream)
  starts, first = plan(len(stream), L, stride)
  n_targets = len(stream) - 1
  chunk = max(batch_size, 1)
  for c in range(0, len(starts), chunk * 64):  # Bounded host memory on long test sets.
    s, f = starts[c:c + chunk * 64], first[c:c + chunk * 64]
    pos_WxL = s[:, None] + np.arange(L)[None, :]          # input positions
    valid_WxL = pos_WxL + 1 <= n_targets                    # target index pos+1 exists
    safe = np.minimum(pos_WxL, n_targets - 1)
    inputs = np.where(valid_WxL, stream[safe], 0).astype(np.int32)
    targets = np.where(valid_WxL, stream[safe + 1], 0).astype(np.int32)
    scored = valid_WxL & (np.arange(L)[None, :] >= f[:, None])
    yield from _pad_batches(inputs, targets, scored.astype(np.float32), batch_size)


def l2t_batches(stream: np.ndarray, window: int, batch_size: int,
                every: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Every `window`-token window at stride 1 (the L2T-Hyena code's TextDataset), all positions.

  `every` > 1 keeps the windows starting at multiples of it: a systematic sample of the same
  metric, `every` times cheaper (the windows are equally weighted, so it is an estimate of it).
  """
  stream = np.asarray(stream)
  starts = np.arange(0, max(len(stream) - window, 0), every)
  for c in range(0, len(starts), batch_size * 64):
    s = starts[c:c + batch_size * 64]
    pos = s[:, None] + np.arange(window)[None, :]
    inputs, targets = stream[pos].astype(np.int32), stream[pos + 1].astype(np.int32)
    yield from _pad_batches(inputs, targets, np.ones(inputs.shape, np.float32), batch_size)


def summarize(nll_sum: float, count: float, n_bytes: float | None = None) -> dict[str, float]:
  out = {'nll_per_token': nll_sum / max(count, 1.0), 'tokens': count}
  out['perplexity'] = float(np.exp(out['nll_per_token']))
  if n_bytes:
    out['bits_per_byte'] = nll_sum / np.log(2.0) / n_bytes
    out['bytes'] = n_bytes
  return out
