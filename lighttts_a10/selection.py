"""Pick the patch set that fits a checkout, by content (blob ids), or the one the user named."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkout import OURS, PRISTINE, Checkout, FileStatus, open_superproject
from .errors import CheckoutError, Problem, UsageError
from .series import Series, available_sets, load_series, patches_dir


@dataclass
class Selected:
    series: Series
    checkout: Checkout
    statuses: list[FileStatus]
    others: list[str]  # one line per other supported set: its pins, and why it did not fit

    @property
    def fits(self) -> bool:
        return all(status.state in (PRISTINE, OURS) for status in self.statuses)


def select(root: Path, set_name: str | None = None, folder: Path | None = None) -> Selected:
    """The set named, else the set whose target files are all pristine or ours, else the closest one.

    A checkout that fits no set still gets the closest set back, so the caller can name every file
    and hunk that differs; `Selected.others` says which other pins exist and why they did not fit.
    """
    open_superproject(root)
    folder = folder or patches_dir()
    names = available_sets(folder)
    if not names:
        raise UsageError(f"no patch sets found under {folder}",
                         hint="reinstall lighttts-a10 (pip install . ships the patch sets), run the tools from a "
                              "clone of it, or point LIGHTTTS_A10_PATCHES_DIR at a folder of patch sets "
                              "(patches/ of a clone)")
    if set_name is not None:
        if set_name not in names:
            raise UsageError(f"unknown patch set {set_name!r}; available: {', '.join(names)}")
        names = [set_name]

    candidates: list[Selected] = []
    refusals: list[Problem] = []
    for name in names:
        series = load_series(folder / name)
        try:
            checkout = Checkout(root, series.repos)
        except CheckoutError as error:
            refusals.append(Problem("wrong-layout", f"{series.summary()}: {error.message}"
                                    + (f" ({error.hint})" if error.hint else "")))
            continue
        candidates.append(Selected(series, checkout, [checkout.status(t) for t in series.files], []))
    if not candidates:
        if len(refusals) == 1:
            raise CheckoutError(refusals[0].message)
        raise CheckoutError("the checkout fits none of the supported patch sets", refusals)

    def known(candidate: Selected) -> int:
        return sum(status.state in (PRISTINE, OURS) for status in candidate.statuses)

    def closeness(candidate: Selected) -> tuple[int, int]:
        """Files the set knows; on a tie, repositories whose HEAD is the set's pin."""
        at_pin = sum(candidate.checkout.head(path) == pin.commit for path, pin in candidate.series.repos.items())
        return known(candidate), at_pin

    best = max(candidates, key=closeness)  # max keeps the first of equals: sets are sorted by name
    for candidate in candidates:
        if candidate is not best:
            differ = len(candidate.statuses) - known(candidate)
            best.others.append(f"{candidate.series.summary()}: {differ} of {len(candidate.statuses)} target files differ")
    best.others.extend(problem.message for problem in refusals)
    return best
