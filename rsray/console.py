"""rsray's terminal: its own lines by default, Ray's internals in Ray's log files.

:func:`setup` is called once by every entry point (``rsray ...``, ``jobs/*.py``). Quiet (the
default): Ray, Ray Tune, Ray Data and Optuna log only errors to the terminal, Tune's own
tables are off, and workers' output stays in Ray's session logs
(``<ray temp dir>/session_latest/logs/``). rsray prints progress itself, once per line:
:class:`TuneProgress` from the driver (per trial and epoch) and :class:`TrainProgress`
(``rsray train``) from Ray Train's controller, whose ``[rsray]`` lines alone are let through to
the terminal (:func:`_filter_worker_output`).
``-v/--verbose`` restores Ray's own output. :class:`Progress` is the progress bar (rate, ETA)
for long loops (prepare, evaluate).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from ray import tune
from ray.train import UserCallback

T = TypeVar("T")

_VERBOSE = False
NOISY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data", "ray.air", "ray.util",
                 "ray._private.authentication", "optuna")
"""Loggers that stay at ERROR on a quiet terminal (set explicitly on the children too:
``ray.init(logging_level=...)`` resets the level of the ``ray`` logger itself)."""


def setup(verbose: bool = False) -> None:
    """Configure the terminal for this process (call before Ray starts)."""
    global _VERBOSE
    _VERBOSE = verbose
    if verbose:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune config boxes / result tables
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    # MLflow configures its loggers (and alembic's, which sets up a SQLite store) at import,
    # at INFO unless told otherwise: "Creating initial MLflow database tables..."
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    _quiet_trial_failures()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _filter_worker_output()
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    try:
        from ray.util.annotations import RayDeprecationWarning

        warnings.filterwarnings("ignore", category=RayDeprecationWarning)
    except ImportError:  # pragma: no cover
        pass


TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
"""Where Tune logs a failed trial's whole traceback ("Trial task failed for trial ...")."""


class _TrialFailureFilter(logging.Filter):
    """Keeps Tune's traceback of a failed trial off a quiet terminal.

    rsray prints its own line instead (:meth:`TuneProgress.on_trial_recover` / ``on_trial_error``
    and the study's ``[study] run failed, retrying ...``), naming the trial's folder, where Tune
    writes the same traceback to ``error.txt``. ``-v/--verbose`` shows it again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """``False`` for the trial-failure record on a quiet terminal."""
        return _VERBOSE or not str(record.msg).startswith("Trial task failed")


def _quiet_trial_failures() -> None:
    """Install :class:`_TrialFailureFilter` on Tune's controller logger (once)."""
    log = logging.getLogger(TUNE_CONTROLLER_LOGGER)
    if not any(isinstance(f, _TrialFailureFilter) for f in log.filters):
        log.addFilter(_TrialFailureFilter())


TRAIN_CONTROLLER = "TrainController"
"""Ray Train's controller actor: where :class:`TrainProgress` runs (Ray Train V2)."""


def _filter_worker_output() -> None:
    """Show only rsray's own lines of Ray's processes on a quiet terminal.

    The driver subscribes to its workers' output (``log_to_driver=True``) and Ray prints it from
    a driver thread through ``ray._private.worker.print_to_stdstream``; there is no public
    filter, so that one function is wrapped. Quiet, it prints only the ``[rsray] ...`` lines of
    Ray Train's controller actor (the epoch lines of :class:`TrainProgress`, which runs there),
    without Ray's ``(pid=...)`` prefix, and drops everything else: workers' output (in Ray's
    session logs), the raylet's warnings ("N PYTHON worker processes have been started", also in
    ``raylet.out``) and autoscaler events. Verbose, Ray prints everything as usual.
    """
    import ray._private.worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_rsray_quiet", False):
        return

    def print_to_stdstream(data: dict[str, Any], ignore_prefix: bool) -> None:
        if _VERBOSE:
            original(data, ignore_prefix)
            return
        if data.get("actor_name") != TRAIN_CONTROLLER:
            return
        sink = sys.stderr if data.get("is_err") else sys.stdout
        for line in data.get("lines") or ():
            if line.startswith("[rsray] "):
                print(line, file=sink, flush=True)

    print_to_stdstream._rsray_quiet = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = print_to_stdstream


def verbose() -> bool:
    """Whether ``-v/--verbose`` was given."""
    return _VERBOSE


def ray_init_kwargs() -> dict[str, Any]:
    """Extra ``ray.init`` arguments: the driver receives its workers' output.

    What of it reaches the terminal is filtered (:func:`_filter_worker_output`, installed here
    too for library callers that never called :func:`setup`): everything when verbose, only
    rsray's epoch lines of ``rsray train`` otherwise.
    """
    _filter_worker_output()
    return {"log_to_driver": True}


def say(text: str) -> None:
    """One rsray line on the terminal."""
    print(text, flush=True)


def format_epoch(result: dict[str, Any], metric: str, max_epochs: int) -> str:
    """``epoch 2/4 val_ap_macro 0.5123 train_loss 0.41 37.2 samples/s data-wait 12% (5.1 s)``."""
    value = result.get(metric)
    parts = [f"epoch {int(result.get('epoch', 0))}/{max_epochs}"]
    if isinstance(value, int | float):
        parts.append(f"{metric} {value:.4f}")
    if isinstance(result.get("train_loss"), int | float):
        parts.append(f"train_loss {result['train_loss']:.4f}")
    if isinstance(result.get("train_samples_per_second"), int | float):
        parts.append(f"{result['train_samples_per_second']:.1f} samples/s")
    if isinstance(result.get("data_wait_share"), int | float):
        parts.append(f"data-wait {100 * result['data_wait_share']:.0f}%")
    if isinstance(result.get("epoch_seconds"), int | float):
        parts.append(f"({result['epoch_seconds']:.1f} s)")
    if result.get("early_stopped"):
        parts.append("early stop")
    return " ".join(parts)


class TuneProgress(tune.Callback):
    """Prints one line per trial start, epoch, end and error (Tune driver side)."""

    def __init__(self, metric: str, max_epochs: int) -> None:
        self.metric, self.max_epochs = metric, max_epochs

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial's configuration, once."""
        params = ", ".join(f"{k}={_short(v)}" for k, v in (trial.config or {}).items())
        say(f"[rsray] {trial.trial_id} started: {params}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """One line per reported epoch."""
        say(f"[rsray] {trial.trial_id} {format_epoch(result, self.metric, self.max_epochs)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Finished (or stopped by ASHA)."""
        say(f"[rsray] {trial.trial_id} finished")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Failed and started again (``train.max_failures``): where its error is."""
        say(f"[rsray] warning: {trial.trial_id} failed, retrying ({trial.num_failures} of at "
            f"most {trial.max_failures}) from its last checkpoint; its error is in "
            f"{trial.local_path}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Failed: where its error is."""
        say(f"[rsray] warning: {trial.trial_id} failed; its error is in {trial.local_path}")


class TrainProgress(UserCallback):
    """Prints one line per reported epoch of a single Ray Train run (driver side)."""

    def __init__(self, metric: str, max_epochs: int) -> None:
        self.metric, self.max_epochs = metric, max_epochs

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any) -> None:
        """Rank 0's metrics of the epoch just reported."""
        if metrics:
            say(f"[rsray] {format_epoch(metrics[0], self.metric, self.max_epochs)}")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class Progress:
    """A progress bar with rate and ETA (tqdm) over ``iterable`` or updated by hand.

    On a terminal it redraws one line; in a log (not a TTY) it writes a line at most every
    ``log_every_s`` seconds, so CI logs stay short.

    Example::

        with Progress(total=len(items), desc="writing shards", unit="patch") as bar:
            for item in items:
                ...
                bar.update(1)
    """

    def __init__(self, iterable: Iterable[T] | None = None, *, total: int | None = None,
                 desc: str = "", unit: str = "it", log_every_s: float = 10.0) -> None:
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        self._bar = tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                         mininterval=0.2 if tty else log_every_s, file=sys.stderr,
                         ascii=not tty)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._bar)

    def update(self, n: int = 1) -> None:
        """Advance by ``n``."""
        self._bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        """Extra fields after the rate (e.g. ``shards=3``)."""
        self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """Finish the bar (prints its last state)."""
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
