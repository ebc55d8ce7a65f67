"""Hugging Face ``Trainer`` → trainlens.

    from trainlens.integrations.huggingface import TrainlensCallback
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      callbacks=[TrainlensCallback(project="sst2")])
    trainer.train()

At ``on_train_begin`` a run is created (or the ``run`` given is used) with the
config from ``args.to_dict()``, under the model's ``config.to_dict()`` when
the model has one (the training arguments win on a shared key), plus
``batch_size`` (``args.train_batch_size``) and the ``config`` passed here.
With ``watch=True`` (the default) the model is instrumented with
:func:`trainlens.torch.watch` every ``logging_steps`` steps, with the
Trainer's optimizer.

Every ``on_log`` sends the numeric values under the names the Trainer writes
(``loss``, ``grad_norm``, ``learning_rate``, ``epoch``, ``eval_loss``,
``eval_<metric>``, ``train_loss``, …) at ``state.global_step``, which the
trainlens diagnosis reads as they are. ``on_train_end`` finishes the run it
created (``finish=False`` leaves it open, for a ``trainer.evaluate()`` after
training: then call ``callback.run.finish()``); a run passed in is left to
its owner.

Only the main process (``state.is_world_process_zero``) logs. Importing this
module imports ``transformers``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Dict, Optional

from transformers import TrainerCallback

import trainlens

from ._util import RunArgs, _RunOptions, _RunOwner, jsonable, numeric

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["TrainlensCallback"]


def _unwrap(optimizer: Any) -> Any:
    """The innermost ``torch.optim.Optimizer`` of accelerate's
    ``AcceleratedOptimizer`` (a subclass that does not set up hooks itself;
    its step calls the inner one's, so the inner one's hooks fire)."""
    import torch

    for _ in range(5):
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            break
        optimizer = inner
    return optimizer if isinstance(optimizer, torch.optim.Optimizer) else None


class TrainlensCallback(_RunOptions, TrainerCallback):
    """Sends a ``Trainer``'s logs (and, with ``watch``, the model's gradient,
    weight, update and activation statistics) to a trainlens run.

    ``project``, ``name``, ``config``, ``tags``, ``server`` go to
    :func:`trainlens.init` (``name`` defaults to ``args.run_name``); ``run``
    uses an existing run instead. ``watch`` instruments the model
    (``watch_every`` steps, default ``args.logging_steps``;
    ``histograms_every`` for the histograms). ``finish`` finishes a run this
    callback created at the end of training."""

    def __init__(
        self,
        project: str = "default",
        *,
        watch: bool = True,
        watch_every: Optional[int] = None,
        histograms_every: int = 200,
        finish: bool = True,
        **run_args: Unpack[RunArgs],
    ) -> None:
        self._owner = _RunOwner(project, **run_args)
        self.watch = watch
        self.watch_every = watch_every
        self.histograms_every = histograms_every
        self.finish = finish
        self._watch: Any = None
        self._warned = False

    # -- the run's config ------------------------------------------------------
    @staticmethod
    def run_config(args: Any, model: Any = None) -> Dict[str, Any]:
        """The config sent for ``args`` (``TrainingArguments``) and ``model``."""
        config: Dict[str, Any] = {}
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            try:
                config.update(model_config.to_dict())
            except Exception:  # an odd config must not stop training
                pass
        config.update(args.to_dict())
        batch = getattr(args, "train_batch_size", None)
        if isinstance(batch, int) and "batch_size" not in config:
            config["batch_size"] = batch
        return jsonable(config)

    def _every(self, args: Any, state: Any) -> int:
        if self.watch_every is not None:
            return max(1, int(self.watch_every))
        steps = getattr(state, "logging_steps", None) or getattr(args, "logging_steps", None) or 10
        # A ratio (< 1) of the training steps is resolved by the Trainer into
        # state.logging_steps; a leftover ratio falls back to 10.
        return int(steps) if steps >= 1 else 10

    # -- Trainer events --------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self._owner.startable:
            run_name = self.name
            if run_name is None:
                hf_name = getattr(args, "run_name", None)
                if hf_name and hf_name != getattr(args, "output_dir", None):
                    run_name = str(hf_name)
            self._owner.start(self.run_config(args, model), name=run_name)
            self._warned = False
        if self.watch and model is not None and self._watch is None:
            from trainlens import torch as tl_torch

            self._watch = tl_torch.watch(self.run, model, every=self._every(args, state),
                                         histograms_every=self.histograms_every,
                                         optimizer=_unwrap(kwargs.get("optimizer")))

    def on_log(self, args: Any, state: Any, control: Any, logs: Optional[Dict[str, Any]] = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.run is None:
            return
        if self._owner.finished:
            if not self._warned:
                warnings.warn("trainlens: the run was finished at the end of training; logs after it "
                              "(trainer.evaluate()) are not sent — use TrainlensCallback(finish=False) "
                              "and call callback.run.finish() yourself", stacklevel=2)
                self._warned = True
            return
        values = numeric(logs)
        if values:
            self.run.log(values, step=int(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.run is None:
            return
        if self._watch is not None:
            self._watch.unwatch()
            self._watch = None
        if self.finish:
            self._owner.finish("finished")
