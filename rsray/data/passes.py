"""A streamed split read pass after pass, each pass started while the previous one is used.

Every pass over a Ray Dataset that is not materialised starts a new execution (read tasks,
decode, the streaming executor): about a second before its first batch on a small cluster,
paid by every training epoch. :class:`EpochStream` starts pass ``k + 1`` the moment pass ``k``
has handed over its last batch, on a background thread that pulls its first ``lead`` batches,
so the execution starts up while the epoch's evaluation runs and the next epoch's first batch
is waiting for it. A pass abandoned part-way (early stopping) starts nothing; after the last
of ``passes`` passes nothing more is started.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any


class _Started:
    """A pass whose first ``lead`` batches are pulled on a background thread."""

    def __init__(self, batches: Iterator[Any], key: tuple[Any, ...], lead: int) -> None:
        self.batches, self.key, self.head = batches, key, []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._pull, args=(lead,), daemon=True,
                                       name="rsray-next-pass")
        self.thread.start()

    def _pull(self, lead: int) -> None:
        try:
            for _ in range(lead):
                self.head.append(next(self.batches))
        except StopIteration:
            pass
        except BaseException as exc:  # raised in the consumer, at its first batch
            self.error = exc

    def take(self) -> Iterator[Any]:
        """The pass: the batches pulled ahead, then the rest."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        yield from self.head
        yield from self.batches


class EpochStream:
    """``dataset`` read ``passes`` times with the next pass started early (see module doc).

    Offers the two iteration methods the training loop uses; a call with other arguments than
    the pass started ahead starts afresh (the early pass is dropped).
    """

    def __init__(self, dataset: Any, *, passes: int, lead: int = 2) -> None:
        self.dataset, self.passes_left, self.lead = dataset, passes, lead
        self._next: _Started | None = None

    def iter_batches(self, **kwargs: Any) -> Iterator[Any]:
        """``Dataset.iter_batches`` of one pass."""
        return self._pass("iter_batches", kwargs)

    def iter_torch_batches(self, **kwargs: Any) -> Iterator[Any]:
        """``Dataset.iter_torch_batches`` of one pass."""
        return self._pass("iter_torch_batches", kwargs)

    def _pass(self, method: str, kwargs: dict[str, Any]) -> Iterator[Any]:
        key = (method, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        started, self._next = self._next, None
        if started is not None and started.key == key:
            batches = started.take()
        else:
            batches = iter(getattr(self.dataset, method)(**kwargs))
        self.passes_left -= 1
        yield from batches
        if self.passes_left > 0:  # the pass was used to its end: start the next one now
            self._next = _Started(iter(getattr(self.dataset, method)(**kwargs)), key,
                                  self.lead)
