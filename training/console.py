"""What ``python -m training`` shows while it trains.

One line per epoch on stdout (as in the logs), and optionally a tqdm bar over the epoch's
steps on stderr with the time left in the epoch and in the run.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from training.events import Baseline, EpochDone, ProgressEvent, Started, Step


def _duration(seconds: float) -> str:
    """e.g. "45 s", "12 min", "3.2 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ConsoleProgress:
    """A progress callback (see :mod:`training.events`) printing the run's lines.

    With ``bar`` each epoch also gets a tqdm bar on stderr, removed before the epoch's line is
    printed; after the first epoch its text says how long the rest of the run should take.
    """

    def __init__(self, bar: bool = False) -> None:
        self.bar = bar
        self._tqdm: tqdm | None = None
        self._epochs, self._steps = 0, 0
        self._seconds: list[float] = []

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, Started):
            self._epochs, self._steps = event.epochs, event.steps_per_epoch
            print(f"run {event.run_id}: {event.epochs} epochs x {event.steps_per_epoch} steps")
        elif isinstance(event, Baseline):
            print(f"before fine-tuning: validation MRE {event.val_mre_pct:.3f} % of height")
        elif isinstance(event, Step) and self.bar:
            self._advance(event)
        elif isinstance(event, EpochDone):
            self.close()
            self._seconds.append(event.seconds)
            flag = " *" if event.best else ""
            print(
                f"epoch {event.epoch:>4}/{event.epochs}  loss {event.loss:9.3f}  "
                f"val MRE {event.val_mre_pct:7.3f} % of height  lr {event.lr:.2e}  "
                f"{event.seconds:6.1f} s{flag}",
                flush=True,
            )

    def _advance(self, event: Step) -> None:
        if self._tqdm is None:
            self._tqdm = tqdm(
                total=self._steps,
                desc=f"epoch {event.epoch}/{self._epochs}",
                unit="step",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            more = self._epochs - event.epoch
            if self._seconds and more > 0:
                rest = sum(self._seconds) / len(self._seconds) * more
                plural = "s" if more > 1 else ""
                self._tqdm.set_postfix_str(f"then ~{_duration(rest)} for {more} more epoch{plural}")
        self._tqdm.update(event.step - self._tqdm.n)

    def close(self) -> None:
        """Remove the epoch's bar, if one is shown."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
