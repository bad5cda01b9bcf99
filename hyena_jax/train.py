"""The training loop: sharded init or resume, jitted steps, eval, checkpoints, metrics.

Importable from Colab: `train.train_and_evaluate(config, workdir)` returns the final report.
"""

import functools
import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hyena_jax import checkpoint, config_lib, data, metrics, optim, sharding, steps
from hyena_jax.distill import steps as distill_steps
from hyena_jax.l2t import steps as l2t_steps
from hyena_jax.models import LM
from jax.sharding import NamedSharding, PartitionSpec as P


class NonFiniteError(FloatingPointError):
  pass


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def model_graphdef_and_abstract_params(c: ml_collections.ConfigDict):
  abstract = nnx.eval_shape(lambda: LM(c.model, rngs=nnx.Rngs(c.seed)))
  return nnx.split(abstract, nnx.Param)


def init_params(c: ml_collections.ConfigDict):
  return nnx.state(LM(c.model, rngs=nnx.Rngs(c.seed)), nnx.Param)


def num_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


class _Terminate:
  """SIGTERM (preemption) sets a flag; the loop saves at the current step and exits cleanly."""

  def __init__(self):
    self.requested = False
    self._prev = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._prev)


class Trainer:
  """Holds the compiled steps; `run()` trains to config.train.num_steps."""

  def __init__(self, c: ml_collections.ConfigDict, workdir: str):
    config_lib.validate(c, jax.device_count())
    self.c, self.workdir = c, workdir
    self.mesh = sharding.make_mesh()
    self.dataset = data.build(c, self.mesh)
    self.graphdef, abstract_params = model_graphdef_and_abstract_params(c)
    self.tx, self.lr_schedule = optim.make(c, abstract_params)
    self.num_params = num_params(abstract_params)
    repl, batch = sharding.replicated(self.mesh), sharding.batch_sharded(self.mesh)
    self.l2t = (None if c.l2t.mode == 'off' else
                l2t_steps.L2T(c, self.graphdef, self.tx, self.lr_schedule))
    self.distill = (None if c.distill.stage == 'off' else
                    distill_steps.Distill(c, self.graphdef, self.tx, self.lr_schedule))
    if self.distill is not None:
      self.tx = self.distill.tx  # The same optimizer, with the frozen parts set to zero.

    def init(teacher=None, student=None):
      if student is not None:
        params = student
      else:
        params = init_params(c) if teacher is None else self.distill.init_params(teacher)
      state = {'step': jnp.zeros((), jnp.int32), 'params': params,
               'opt_state': self.tx.init(params)}
      if teacher is not None:
        state['teacher'] = teacher
      if c.l2t.mode in ('paper', 'meta'):
        state['l2t'] = self.l2t.init(jax.random.fold_in(jax.random.PRNGKey(c.seed), 0x4C3254))
      return state

    self._init = init
    abstract_teacher = None if self.distill is None else self.distill.abstract_teacher
    abstract_state = jax.eval_shape(init, abstract_teacher)
    self.state_sharding = jax.tree.map(lambda _: repl, abstract_state)
    self.abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state,
        self.state_sharding)
    self.traces = 0  # Incremented at trace time: a recompile after step 1 is a bug.

    def counted_train_step(state, b):
      self.traces += 1
      if self.l2t is not None:
        return self.l2t.train_step(state, b)
      if self.distill is not None:
        return self.distill.train_step(state, b)
      return steps.train_step(state, b, graphdef=self.graphdef, tx=self.tx,
                              lr_schedule=self.lr_schedule, seed=c.seed,
                              inject_nan_at_step=c.train.inject_nan_at_step)

    self.train_step = jax.jit(counted_train_step, in_shardings=(self.state_sharding, batch),
                              out_shardings=(self.state_sharding, repl), donate_argnums=0)
    self.meta_step = None
    if c.l2t.mode == 'meta':
      m = c.l2t.meta
      self.meta_K, self.meta_every = m.unroll, m.every
      self.meta_val_size = m.val_batch_size or c.train.global_batch_size
      stacked = NamedSharding(self.mesh, P(None, 'data'))
      self._stack = jax.jit(lambda *bs: jax.tree.map(lambda *x: jnp.stack(x), *bs),
                            out_shardings=stacked)
      self.meta_step = jax.jit(self.l2t.meta_step,
                               in_shardings=(self.state_sharding, stacked, batch),
                               out_shardings=(self.state_sharding, repl), donate_argnums=0)
    self.eval_step = jax.jit(functools.partial(steps.eval_step, graphdef=self.graphdef),
                             in_shardings=(self.state_sharding['params'], batch),
                             out_shardings=repl)

  def _meta_due(self, step: int) -> bool:
    return (self.meta_step is not None and step % self.meta_every == 0
            and step + self.meta_K <= self.c.train.num_steps)

  def initial_state(self):
    if self.distill is not None:
      # Loaded on the host once (a fresh start only: a resumed state holds the teacher).
      teacher, student = self.distill.teacher_params(), self.distill.loaded_student()
      return jax.jit(self._init, out_shardings=self.state_sharding)(teacher, student)
    return jax.jit(self._init, out_shardings=self.state_sharding)()

  def evaluate(self, params) -> dict[str, float]:
    tot = {'loss_sum': 0.0, 'correct_sum': 0.0, 'count': 0.0}
    for b in self.dataset.eval_batches():
      out = self.eval_step(params, b)
      for k in tot:
        tot[k] += float(sharding.to_host(out[k]))
    n = max(tot['count'], 1.0)
    out = {'loss': tot['loss_sum'] / n, 'accuracy': tot['correct_sum'] / n}
    if getattr(self.dataset, 'reports_perplexity', False):
      out['perplexity'] = float(np.exp(out['loss']))
    return out

  def run(self) -> dict:
    c, t = self.c, self.c.train
    ckpt = checkpoint.Checkpointer(self.workdir, c)
    start_time = time.time()
    latest = ckpt.latest_step()
    if latest is not None:
      state, data_state = ckpt.restore(latest, self.abstract_state)
      self.dataset.restore(data_state)
      log(f'Resumed from {ckpt.directory} at step {latest}.')
    else:
      state = self.initial_state()
    step = int(sharding.to_host(state['step']))
    writer = metrics.MetricWriter(self.workdir, resume_step=step)
    log(f'hyena_jax: {c.model.mixer} LM, {self.num_params:,} params, {jax.device_count()} '
        f'device(s) over {jax.process_count()} process(es), data={c.data.name}, '
        f'batch={t.global_batch_size}x{c.data.seq_len}, steps {step}->{t.num_steps}')
    tokens_per_step = t.global_batch_size * c.data.seq_len
    term = _Terminate()
    pending = None  # (step, device metrics) not yet checked on the host
    last = {'train': {}, 'eval': {}}
    window = (time.time(), step)
    last_print = time.time()
    steps_this_run = calls_this_run = 0

    def check(s, m, write):
      host = {k: float(sharding.to_host(v)) for k, v in m.items()}
      if not (np.isfinite(host['loss']) and np.isfinite(host['grad_norm'])):
        raise NonFiniteError(f'non-finite loss ({host["loss"]}) at step {s}; the last '
                             f'checkpoint (step {ckpt.latest_step()}) is kept')
      if write:
        writer.write(s, 'train', host)
      last['train'] = host | {'step': s}

    def progress(s, force=False):
      nonlocal window, last_print
      now = time.time()
      if not force and now - last_print < t.log_every_secs:
        return
      rate = (s - window[1]) / max(now - window[0], 1e-9)
      eta = (t.num_steps - s) / rate if rate > 0 else float('nan')
      tr = last['train']
      log(f'step {s}/{t.num_steps} | loss {tr.get("loss", float("nan")):.4f} | '
          f'acc {tr.get("accuracy", float("nan")):.4f} | {rate:.2f} steps/s | '
          f'{rate * tokens_per_step:,.0f} tok/s | ETA {metrics.format_duration(eta) if eta == eta else "?"}')
      window, last_print = (now, s), now

    try:
      while step < t.num_steps:
        prev = step
        if self._meta_due(step):
          batches = [self.dataset.train_batch(step + i) for i in range(self.meta_K)]
          val = self.dataset.meta_val_batch(step, self.meta_val_size)
          state, m = self.meta_step(state, self._stack(*batches), val)
          step += self.meta_K
        else:
          batch = self.dataset.train_batch(step)
          state, m = self.train_step(state, batch)  # Dispatched; runs while we log the last.
          step += 1
        calls_this_run += 1
        steps_this_run += step - prev
        # A meta step advances K steps: an event is due when its multiple was crossed.
        crossed = lambda every: step // every > prev // every
        if calls_this_run == 1:
          window = (time.time(), step)  # Exclude compilation from the rate.
        if pending is not None:
          check(*pending)
        # Meta steps are rare and carry the teacher's signals: always logged.
        pending = (step, m, crossed(t.metrics_every_steps) or step == t.num_steps
                   or step - prev > 1 or 'heldout_loss' in m)
        if calls_this_run > 1:
          progress(prev)
        do_eval = crossed(t.eval_every_steps) or step == t.num_steps
        do_save = crossed(t.checkpoint_every_steps) or step == t.num_steps or term.requested
        if do_eval or do_save:
          check(*pending)  # Never evaluate or save a state we have not seen to be finite.
          pending = None
        if do_eval:
          ev = self.evaluate(state['params'])
          writer.write(step, 'eval', ev)
          last['eval'] = ev | {'step': step}
          log(f'eval @ step {step}: loss {ev["loss"]:.4f} | accuracy {ev["accuracy"]:.4f}' +
              (f' | perplexity {ev["perplexity"]:.2f}' if 'perplexity' in ev else ''))
        if do_save:
          ckpt.save(step, state, self.dataset.state(), force=term.requested)
        if term.requested:
          ckpt.wait()
          log(f'SIGTERM: saved step {step} to {ckpt.directory}; exiting.')
          break
        if (t.stop_at_eval_accuracy is not None and do_eval and
            last['eval']['accuracy'] >= t.stop_at_eval_accuracy):
          if not do_save:
            ckpt.save(step, state, self.dataset.state(), force=True)
          ckpt.wait()
          log(f'eval accuracy {last["eval"]["accuracy"]:.4f} >= '
              f'{t.stop_at_eval_accuracy}: stopping at step {step}.')
          break
      if pending is not None:
        check(*pending)
      if not last['eval'] and not term.requested:
        # E.g. re-running a finished workdir: report the restored model, not nothing.
        last['eval'] = self.evaluate(state['params']) | {'step': step}
      if steps_this_run:
        progress(step, force=True)
    finally:
      term.restore()
      ckpt.close()
      writer.close()
    report = {
        'step': step, 'num_params': self.num_params,
        'train_loss': last['train'].get('loss'), 'train_accuracy': last['train'].get('accuracy'),
        'eval_loss': last['eval'].get('loss'), 'eval_accuracy': last['eval'].get('accuracy'),
        'wall_time_s': round(time.time() - start_time, 1), 'steps_this_run': steps_this_run,
        'devices': jax.device_count(), 'processes': jax.process_count(),
        'preempted': term.requested,
    }
    if jax.process_index() == 0:
      with open(os.path.join(self.workdir, 'final_report.json'), 'w') as f:
        json.dump(report, f, indent=2)
    log('final report: ' + json.dumps(report))
    return report


def train_and_evaluate(c: ml_collections.ConfigDict, workdir: str) -> dict:
  return Trainer(c, workdir).run()
