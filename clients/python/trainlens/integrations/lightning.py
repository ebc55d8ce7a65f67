"""(PyTorch) Lightning ``Trainer`` → trainlens.

    from trainlens.integrations.lightning import TrainlensLogger
    logger = TrainlensLogger(project="mnist")
    logger.watch(model)              # optional: gradients, weights, activations
    Trainer(logger=logger, max_epochs=5).fit(model, train_loader, val_loader)

The run is created when the Trainer has logged the hyperparameters (the
LightningModule's ``save_hyperparameters()``, which become the run's config,
merged over the ``config`` given here), just before the first training step;
``logger.run`` (also ``logger.experiment``) is ``None`` until then, unless a
``run`` was passed in. Metrics are sent under Lightning's names
(``train_loss``, ``train_loss_step``/``_epoch``, ``val_loss``, ``val_acc``,
``epoch``, ``lr-SGD`` from ``LearningRateMonitor``, …) at the Trainer's step;
``finalize`` finishes the run as ``finished`` (or ``failed`` when training
raised). A Trainer calls ``finalize`` at the end of each ``fit``,
``validate`` or ``test``: use one logger per stage.

:meth:`TrainlensLogger.watch` is :func:`trainlens.torch.watch` on the run
(deferred until the run exists). Its step counts the watched module's
training-mode forward passes, so watch the module that ``training_step``
calls: the LightningModule itself when ``training_step`` calls ``self(x)``,
else the inner network (``logger.watch(model.net)``).

Imports ``lightning.pytorch``, or ``pytorch_lightning`` when only that is
installed.
"""

from __future__ import annotations

import uuid
import warnings
from argparse import Namespace
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

try:
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # only the older package name is installed
    from pytorch_lightning.loggers import Logger  # type: ignore[no-redef]
    from pytorch_lightning.utilities import rank_zero_only  # type: ignore[no-redef]

import trainlens

from ._util import RunArgs, _RunOwner, jsonable, numeric

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["TrainlensLogger"]


class TrainlensLogger(Logger):
    """A Lightning logger that sends metrics and hyperparameters to trainlens.

    ``project``, ``name``, ``config``, ``tags``, ``server`` go to
    :func:`trainlens.init` (``name`` defaults to ``run-<8 hex digits>``, made
    here so that ``version`` is known before the run exists); ``run`` uses an
    existing run instead (its config is then what it was created with)."""

    def __init__(self, project: str = "default", **run_args: Unpack[RunArgs]) -> None:
        super().__init__()
        run = run_args.get("run")
        run_args["name"] = run_args.get("name") or (getattr(run, "name", None) if run is not None else None) \
            or f"run-{uuid.uuid4().hex[:8]}"
        run_args["config"] = jsonable(dict(run_args.get("config") or {}))
        self._owner = _RunOwner(project, **run_args)
        #: The hyperparameters logged before the run exists: its config, under ``config``.
        self._hparams: Dict[str, Any] = {}
        self._pending_watch: List[Dict[str, Any]] = []
        self.watches: List[Any] = []
        self._step = 0
        self._warned = False

    # -- Logger's properties ---------------------------------------------------
    @property
    def name(self) -> str:
        """The project (Lightning's experiment name)."""
        return self._owner.project

    @property
    def version(self) -> str:
        """The run's name (Lightning's version)."""
        return self._owner.name

    @property
    def run(self) -> Optional[trainlens.Run]:
        """The trainlens run; ``None`` until the Trainer has started training."""
        return self._owner.run

    @property
    def experiment(self) -> Optional[trainlens.Run]:
        """The same as :attr:`run` (Lightning's name for a logger's backend)."""
        return self._owner.run

    # -- the run ---------------------------------------------------------------
    def _ensure_run(self) -> trainlens.Run:
        run = self._owner.run
        if run is None:
            run = self._owner.start(self._hparams)
        for kwargs in self._pending_watch:
            self.watches.append(self._watch_now(**kwargs))
        self._pending_watch = []
        return run

    def _watch_now(self, **kwargs: Any) -> Any:
        from trainlens import torch as tl_torch

        return tl_torch.watch(self._owner.run, **kwargs)

    def watch(self, model: Any, every: int = 10, histograms_every: int = 200, optimizer: Any = None,
              loss_fn: Any = None, log_model: bool = True) -> Optional[Any]:
        """:func:`trainlens.torch.watch` on this logger's run: the model's
        gradient, weight, update and activation statistics every ``every``
        steps. Returns the ``Watch`` when the run exists already; else the
        watch starts when the run is created (before the first training
        step) and is then in :attr:`watches`."""
        kwargs = dict(model=model, every=every, histograms_every=histograms_every, optimizer=optimizer,
                      loss_fn=loss_fn, log_model=log_model)
        if self._owner.run is None:
            self._pending_watch.append(kwargs)
            return None
        w = self._watch_now(**kwargs)
        self.watches.append(w)
        return w

    # -- Logger's methods ------------------------------------------------------
    @rank_zero_only
    def log_hyperparams(self, params: Union[Dict[str, Any], Namespace, Any], *args: Any, **kwargs: Any) -> None:
        """Adds ``params`` to the run's config (before the run exists; later
        ones cannot change a run's config and are reported)."""
        if isinstance(params, Namespace):
            params = vars(params)
        if not isinstance(params, Mapping):
            params = dict(params or {})
        if self._owner.run is None:
            self._hparams = {**jsonable(dict(params)), **self._hparams}
        elif params:
            warnings.warn("trainlens: hyperparameters logged after the run was created are not sent "
                          f"({sorted(map(str, params))[:5]}…); pass them as TrainlensLogger(config=...)",
                          stacklevel=2)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Called by the Trainer right after the hyperparameters: creates the run."""
        self._ensure_run()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        """Sends the numeric ``metrics`` at ``step`` (the Trainer's step)."""
        run = self._ensure_run()
        if self._owner.finished:
            if not self._warned:
                warnings.warn("trainlens: the run was finished by the end of a Trainer stage; metrics "
                              "logged after it are not sent — use a new TrainlensLogger per stage",
                              stacklevel=2)
                self._warned = True
            return
        if step is None:
            step = self._step
        self._step = int(step)
        values = numeric(metrics)
        if values:
            run.log(values, step=int(step))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finishes the run: ``finished`` after ``success``, else ``failed``."""
        if self._owner.run is None or self._owner.finished:
            return
        for w in self.watches:
            w.unwatch()
        self.watches = []
        # A run passed in is left to its owner.
        self._owner.finish("finished" if status in ("success", "finished") else "failed")
