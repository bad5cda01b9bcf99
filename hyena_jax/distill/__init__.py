"""Scavenging Hyena: distil a GPT-NeoX teacher into a Hyena student (student.py, losses.py)."""

from hyena_jax.distill.losses import MODES, e2e_loss, layer_match_loss, teacher_activations
from hyena_jax.distill.student import build_student, deinterleave_qkv, param_labels, student_config
