"""The package's XLA:CPU defaults (hyena_jax/__init__.py): applied, opt-out-able, same numbers."""

import json
import os
import subprocess
import sys

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHILD = r'''
import json, os, sys
import hyena_jax
import jax, jax.numpy as jnp
from flax import nnx
from hyena_jax import config_lib
from hyena_jax.models import HyenaOperator
c = config_lib.base_config().model
c.update(d_model=16, l_max=64)
op = HyenaOperator(16, c, rngs=nnx.Rngs(0))
g, p, r = nnx.split(op, nnx.Param, ...)
u = jax.random.normal(jax.random.key(1), (2, 64, 16))
loss = lambda p, u: jnp.sum(nnx.merge(g, p, r)(u) ** 2)
val, (gp, gu) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(p, u)
print(json.dumps({'flags': os.environ.get('XLA_FLAGS', ''), 'loss': float(val),
                  'grad_u': jnp.ravel(gu).tolist(),
                  'grad_p': [float(jnp.sum(x * x)) for x in jax.tree.leaves(gp)]}))
'''


def _run(**env):
  full = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'HYENA_JAX_XLA_DEFAULTS')}
  full.update(env, PYTHONPATH=_REPO, JAX_PLATFORMS='cpu')
  res = subprocess.run([sys.executable, '-c', _CHILD], env=full, capture_output=True,
                       text=True, check=True, timeout=300)
  return json.loads(res.stdout.strip().splitlines()[-1])


def test_defaults_are_applied_respected_and_numerically_neutral():
  on, off = _run(), _run(HYENA_JAX_XLA_DEFAULTS='0')
  assert 'ynn_fusion_type=-reduce' in on['flags']
  assert off['flags'] == ''
  np.testing.assert_allclose(on['loss'], off['loss'], rtol=1e-6)
  np.testing.assert_allclose(on['grad_u'], off['grad_u'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(on['grad_p'], off['grad_p'], rtol=1e-5)
  # A user's own setting of the flag is left alone.
  mine = _run(XLA_FLAGS='--xla_cpu_experimental_ynn_fusion_type=')
  assert mine['flags'] == '--xla_cpu_experimental_ynn_fusion_type='
