"""O(1)-per-token Hyena decoding: distil every trained long filter into a modal form
(Laughing Hyena, arXiv 2310.18780) and decode with the recurrence.

  model_m, report = modal.to_modal(model, order=16)   # a copy; `model` is unchanged
  generate.generate(model_m, prompts, 64)             # the same API, O(order) per token

The fit (hyena_jax.ops.modal.fit_hyena_filter: Hankel/ERA init + Levenberg-Marquardt per
channel) runs once, eagerly, on the filter at l_max taps. The distilled model's full forward
uses the modal filters too, so its perplexity is exactly what the recurrence decodes
(benchmarks/modal_decode.py reports filter error and perplexity change).
"""

from flax import nnx

from hyena_jax import ops
from hyena_jax.models.hyena import HyenaOperator, Modal


def to_modal(model: nnx.Module, order: int, *, tol: float | None = None, max_order: int = 64,
             **fit_kw) -> tuple[nnx.Module, list[dict]]:
  """(a copy of model with every Hyena mixer's filters in modal form, per-layer fit report).

  order: complex modes per channel (2 x order real states); with tol, each layer doubles its
  order until every channel's relative L2 error is <= tol (or max_order).
  """
  model = nnx.clone(model)
  report = []
  for i, block in enumerate(model.blocks):
    mixer = block.mixer
    if not isinstance(mixer, HyenaOperator):
      continue
    if mixer.modal_poles is not None:
      raise ValueError(f'block {i} is already modal')
    h_LxC = mixer.filter(mixer.l_max)
    poles, residues, info = ops.modal.fit_hyena_filter(h_LxC, order, tol=tol,
                                                       max_order=max_order, **fit_kw)
    # nnx.data: the attributes were static (None) until now.
    mixer.modal_poles, mixer.modal_residues = nnx.data(Modal(poles)), nnx.data(Modal(residues))
    report.append({'layer': i, 'order': info['order'], 'taps': int(h_LxC.shape[0]),
                   'max_rel_err': info['max_rel_err'], 'mean_rel_err': info['mean_rel_err']})
  if not report:
    raise ValueError('to_modal: the model has no Hyena mixer')
  return model, report
