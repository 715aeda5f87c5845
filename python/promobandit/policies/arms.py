"""Arm labels: any hashable labels (offer ids, strings, ints) beside the policies' arm
indices 0..K-1.

An ``ArmIndex`` keeps one label per arm slot, in slot order, and follows the policies'
rules for arms: ``add`` appends a slot (as ``Policy.add_arm`` does) and ``remove`` marks
a slot removed without freeing it (as ``Policy.remove_arm``: slot indices are never
reused, and late rewards for a removed label still find their slot). Adding a label
that was removed gives it a new slot (a fresh arm, the old slot stays removed).

    idx = ArmIndex(["10%", "20%", "free shipping"])
    policy = BetaTS(len(idx))
    arm, _ = policy.select()
    label = idx.label(arm)
    policy.update_batch(idx.indices(["20%", "10%"]), [1, 0])

Errors name the unknown label. The catalogue of offers gives an index of its offer ids
with ``ArmIndex.from_catalogue(catalogue)`` (arm k is the catalogue's offers[k]).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import numpy as np

from .._validation import check_int


def _check_label(label: Any, field: str) -> Hashable:
    if isinstance(label, np.generic):
        label = label.item()  # NumPy scalars are kept as the Python values they equal
    try:
        hash(label)
    except TypeError as exc:
        raise ValueError(f"{field}: an arm label must be hashable, got {label!r} "
                         f"({type(label).__name__})") from exc
    if isinstance(label, (float, np.floating)) and math.isnan(label):
        raise ValueError(f"{field}: NaN is not an arm label (it equals nothing, itself "
                         "included)")
    return label


class ArmIndex:
    """Arm labels <-> policy arm indices (see the module).

    labels: the labels of arms 0..K-1, unique (1, 1.0 and True count as one label, as in
        a dict).
    """

    __slots__ = ("_active", "_ids", "_labels")

    def __init__(self, labels: Iterable[Hashable]) -> None:
        if isinstance(labels, (str, bytes)):
            raise ValueError(f"labels: expected an iterable of arm labels, got the string "
                             f"{labels!r}")
        try:
            items = list(labels)
        except TypeError as exc:
            raise ValueError(f"labels: expected an iterable of arm labels, got "
                             f"{type(labels).__name__}") from exc
        self._labels: list[Hashable] = []
        self._ids: dict[Hashable, int] = {}
        self._active: list[bool] = []
        for i, item in enumerate(items):
            label = _check_label(item, f"labels[{i}]")
            if label in self._ids:
                raise ValueError(f"labels[{i}]: duplicate arm label {label!r} (also "
                                 f"labels[{self._ids[label]}])")
            self._ids[label] = i
            self._labels.append(label)
            self._active.append(True)

    @classmethod
    def from_catalogue(cls, catalogue: Any) -> ArmIndex:
        """The index of a catalogue's offers by offer id: arm k is ``catalogue.offers[k]``
        (any object whose ``offers`` have an ``id``, such as ``promobandit.offers.Catalogue``)."""
        offers = getattr(catalogue, "offers", None)
        if offers is None:
            raise ValueError(f"catalogue: expected a catalogue with offers, got "
                             f"{type(catalogue).__name__}")
        ids = []
        for i, offer in enumerate(offers):
            if not hasattr(offer, "id"):
                raise ValueError(f"catalogue.offers[{i}]: expected an offer with an id, got "
                                 f"{type(offer).__name__}")
            ids.append(offer.id)
        return cls(ids)

    # --- size and membership -----------------------------------------------------------
    def __len__(self) -> int:
        """Number of arm slots, removed ones included: the policy's ``n_arms``."""
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        """Whether ``label`` is an active arm."""
        try:
            i = self._ids.get(label)  # type: ignore[call-overload]
        except TypeError:  # unhashable
            return False
        return i is not None and self._active[i]

    def __iter__(self) -> Iterator[Hashable]:
        """The active labels, in arm order."""
        return iter(self.labels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArmIndex):
            return NotImplemented
        return self._labels == other._labels and self._active == other._active

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"ArmIndex({self.labels!r}, n_arms={len(self)})"

    @property
    def labels(self) -> list[Hashable]:
        """The labels of the active arms, in arm order."""
        return [lab for lab, on in zip(self._labels, self._active, strict=True) if on]

    @property
    def active(self) -> np.ndarray:
        """(K,) bool: True where the arm is active (as ``Policy.active_arms`` marks them)."""
        return np.array(self._active, dtype=bool)

    # --- labels -> indices -------------------------------------------------------------
    def index(self, label: Hashable, field: str = "arm") -> int:
        """The arm index of ``label`` (removed arms included: late rewards still land)."""
        try:
            return self._ids[label]
        except (KeyError, TypeError):
            raise ValueError(f"{field}: unknown arm {label!r} (known arms: "
                             f"{self._preview()})") from None

    def indices(self, labels: Any, field: str = "arms") -> np.ndarray:
        """The arm indices of many labels, as an int64 array (a list, tuple, NumPy
        array or pandas Series of labels)."""
        if hasattr(labels, "to_numpy") and not isinstance(labels, np.ndarray):
            labels = labels.to_numpy()
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
            raise ValueError(f"{field}: expected a sequence of arm labels, got {labels!r}")
        ids = self._ids
        n = len(labels)
        if isinstance(labels, np.ndarray) and labels.dtype.kind in "iuUS" and labels.ndim == 1:
            # Vectorised: look up each distinct label once.
            uniq, inverse = np.unique(labels, return_inverse=True)
            mapped = np.empty(uniq.shape[0], dtype=np.int64)
            for j, lab in enumerate(uniq.tolist()):
                i = ids.get(lab)
                if i is None:
                    self._unknown(labels, field)
                mapped[j] = i
            return mapped[inverse.reshape(-1)]
        out = np.empty(n, dtype=np.int64)
        try:
            for j, lab in enumerate(labels):
                out[j] = ids[lab]
        except (KeyError, TypeError):
            self._unknown(labels, field)
        return out

    def _unknown(self, labels: Any, field: str) -> None:
        for j, lab in enumerate(labels):
            key = lab.item() if isinstance(lab, np.generic) else lab
            try:
                known = key in self._ids
            except TypeError:
                known = False
            if not known:
                raise ValueError(f"{field}: unknown arm {key!r} at position {j} (known "
                                 f"arms: {self._preview()})")
        raise AssertionError("unreachable: every label was found")  # pragma: no cover

    def _preview(self) -> str:
        shown = [repr(lab) for lab in self.labels[:10]]
        more = len(self.labels) - len(shown)
        return "[" + ", ".join(shown) + (f", ... {more} more" if more else "") + "]"

    # --- indices -> labels -------------------------------------------------------------
    def label(self, index: Any) -> Hashable:
        """The label of arm ``index``."""
        i = check_int("arm", index, 0)
        if i >= len(self._labels):
            raise ValueError(f"arm: {i} is out of range for an index of {len(self)} arms")
        return self._labels[i]

    def labels_of(self, indices: Any) -> list[Hashable]:
        """The labels of many arm indices (e.g. the arms of ``select_batch``), as a list."""
        a = np.asarray(indices)
        if a.dtype.kind not in "iu" or a.ndim != 1:
            raise ValueError(f"arms: expected a 1-D integer array of arm indices, got dtype "
                             f"{a.dtype} and shape {a.shape}")
        if a.size and (int(a.min()) < 0 or int(a.max()) >= len(self._labels)):
            j = int(np.flatnonzero((a < 0) | (a >= len(self._labels)))[0])
            raise ValueError(f"arms: {int(a[j])} at position {j} is out of range for an index "
                             f"of {len(self)} arms")
        labels = self._labels
        return [labels[i] for i in a.tolist()]

    # --- arms come and go (as Policy.add_arm / remove_arm) -------------------------------
    def add(self, label: Hashable) -> int:
        """Adds an arm labelled ``label`` and returns its index (len(self) - 1), the id
        that ``Policy.add_arm`` returns when called alongside."""
        label = _check_label(label, "arm")
        i = self._ids.get(label)
        if i is not None and self._active[i]:
            raise ValueError(f"arm: {label!r} is already an arm (index {i})")
        new = len(self._labels)
        self._labels.append(label)
        self._active.append(True)
        self._ids[label] = new
        return new

    def remove(self, label: Hashable) -> int:
        """Marks the arm ``label`` removed and returns its index, to pass to
        ``Policy.remove_arm``. The label still resolves (late rewards); the last active
        arm cannot be removed, as in the policies."""
        i = self.index(label, "arm")
        if not self._active[i]:
            raise ValueError(f"arm: {label!r} was already removed")
        if sum(self._active) == 1:
            raise ValueError(f"arm: cannot remove {label!r}, the last active arm")
        self._active[i] = False
        return i

    def check_policy(self, policy: Any) -> None:
        """Raises ValueError unless ``policy`` has this index's arm slots and active arms."""
        if policy.n_arms != len(self):
            raise ValueError(f"policy: has {policy.n_arms} arms, the arm index has {len(self)}")
        if not np.array_equal(np.asarray(policy.active_arms), np.flatnonzero(self.active)):
            raise ValueError("policy: its active arms differ from the arm index's")

    # --- state -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The labels of every slot and which are active (labels as given)."""
        return {"labels": list(self._labels), "active": list(self._active)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmIndex:
        """The index ``to_dict`` describes."""
        if not isinstance(data, dict) or set(data) != {"labels", "active"}:
            raise ValueError("arm_index: expected a dict with exactly 'labels' and 'active'")
        labels, active = list(data["labels"]), list(data["active"])
        if len(labels) != len(active) or not all(isinstance(a, bool) for a in active):
            raise ValueError("arm_index: 'active' must be one bool per label")
        if not any(active):
            raise ValueError("arm_index: no active arm")
        # A removed label may reappear later in a new slot: build slot by slot.
        out = cls([])
        for i, (item, on) in enumerate(zip(labels, active, strict=True)):
            label = _check_label(item, f"labels[{i}]")
            j = out._ids.get(label)
            if j is not None and out._active[j]:
                raise ValueError(f"labels[{i}]: duplicate active arm label {label!r}")
            out._ids[label] = i
            out._labels.append(label)
            out._active.append(on)
        return out

    def copy(self) -> ArmIndex:
        return ArmIndex.from_dict(self.to_dict())
