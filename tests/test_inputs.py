"""Friendly native inputs: data frames, other dtypes and lists give exactly the decisions
and state of the float64 / int64 / bool arrays they stand for, on every backend; what
cannot be converted is rejected naming the field, with no state change; arrays already
in the kernel's form are passed on as they are. And ArmIndex: labels <-> arm indices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from promobandit import _validation
from promobandit.policies import (
    UCB1,
    ArmIndex,
    BetaTS,
    EpsilonGreedy,
    GaussianTS,
    LinTS,
    LinUCB,
    Policy,
    Softmax,
    base,
)

K, D, N = 5, 4, 120


def data(seed: int = 0) -> dict[str, np.ndarray]:
    rs = np.random.default_rng(seed)
    masks = rs.random((N, K)) < 0.7
    masks[:, 0] |= ~masks.any(axis=1)  # every row keeps an eligible arm
    return {
        "arms": rs.integers(0, K, N),
        "rewards": (rs.random(N) < 0.4).astype(np.float64),  # 0/1: exact in every dtype
        # Values exact in float16 too, so every float dtype stands for the same float64.
        "contexts": np.round(rs.normal(size=(N, D)) * 8) / 8,
        "weights": rs.integers(1, 4, N).astype(np.float64),
        "masks": masks,
    }


def make(kind: str, backend: str) -> Policy:
    if kind == "BetaTS":
        return BetaTS(K, seed=7, backend=backend, propensity_draws=64)
    if kind == "GaussianTS":
        return GaussianTS(K, seed=7, backend=backend, propensity_draws=64)
    if kind == "UCB1":
        return UCB1(K, seed=7, backend=backend)
    if kind == "EpsilonGreedy":
        return EpsilonGreedy(K, seed=7, backend=backend, epsilon=0.2)
    if kind == "Softmax":
        return Softmax(K, seed=7, backend=backend)
    if kind == "LinUCB":
        return LinUCB(K, D, seed=7, backend=backend)
    return LinTS(K, D, seed=7, backend=backend, propensity_draws=64)


KINDS = ["BetaTS", "GaussianTS", "UCB1", "EpsilonGreedy", "Softmax", "LinUCB", "LinTS"]


def assert_same_state(a: Policy, b: Policy) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa["arrays"]:
        np.testing.assert_array_equal(sa["arrays"][name], sb["arrays"][name], err_msg=name)


# Ways of passing each field: each turns the float64 / int64 / bool array into what a
# caller might hold.
FLOAT_FORMS: dict[str, Callable[[np.ndarray], Any]] = {
    "float32": lambda a: a.astype(np.float32),
    "float16": lambda a: a.astype(np.float16),
    "list": lambda a: a.tolist(),
    "pandas": lambda a: pd.DataFrame(a, columns=[f"x{i}" for i in range(a.shape[1])])
    if a.ndim == 2 else pd.Series(a, name="r"),
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "fortran": lambda a: np.asfortranarray(a),
}
REWARD_FORMS: dict[str, Callable[[np.ndarray], Any]] = {
    "int64": lambda r: r.astype(np.int64),
    "int8": lambda r: r.astype(np.int8),
    "bool": lambda r: r.astype(bool),
    "list of ints": lambda r: [int(v) for v in r],
    "pandas bool": lambda r: pd.Series(r.astype(bool)),
    "pandas nullable Int64": lambda r: pd.Series(r.astype(np.int64), dtype="Int64"),
}
ARM_FORMS: dict[str, Callable[[np.ndarray], Any]] = {
    "int32": lambda a: a.astype(np.int32),
    "uint8": lambda a: a.astype(np.uint8),
    "list": lambda a: a.tolist(),
    "pandas": lambda a: pd.Series(a, name="decision"),
    "strided": lambda a: np.repeat(a, 2)[::2],
}
MASK_FORMS: dict[str, Callable[[np.ndarray], Any]] = {
    "list": lambda m: m.tolist(),
    "pandas": lambda m: pd.DataFrame(m),
    "fortran": lambda m: np.asfortranarray(m),
}


def run(p: Policy, d: dict[str, Any], *, n_single: int = 10) -> list[Any]:
    """One workload through every entry point; returns everything the policy answered."""
    ctx = d["contexts"] if p.contextual else None
    out: list[Any] = []
    p.update_batch(d["arms"], d["rewards"], ctx, d["weights"])
    arms, props = p.select_batch(ctx, d["masks"])
    out += [arms.copy(), props.copy()]
    for i in range(n_single):
        x = d["row"](i) if p.contextual else None
        out.append(p.select(x, d["mask_row"](i)))
        p.update(int(arms[i]), d["reward_row"](i), x)
    out.append(p.action_probabilities(ctx, d["masks"], draws=32))
    out.append(p.expectations(ctx) if p.contextual else p.expectations())
    return out


def plain(d: dict[str, np.ndarray]) -> dict[str, Any]:
    return {**d, "row": lambda i: d["contexts"][i], "mask_row": lambda i: d["masks"][i],
            "reward_row": lambda i: float(d["rewards"][i])}


def assert_same_answers(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, tuple):
            assert x == y
        else:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", sorted(FLOAT_FORMS))
def test_float_fields_in_any_form_give_the_same_decisions_and_state(
        kind: str, form: str, backend: str) -> None:
    d = data()
    ref = make(kind, backend)
    want = run(ref, plain(d))
    f = FLOAT_FORMS[form]
    friendly = {**plain(d), "contexts": f(d["contexts"]), "weights": f(d["weights"]),
                "rewards": f(d["rewards"]),
                "row": lambda i: f(d["contexts"][i]),
                "reward_row": lambda i: f(d["rewards"][i:i + 1])[0]
                if form != "pandas" else f(d["rewards"]).iloc[i]}
    p = make(kind, backend)
    got = run(p, friendly)
    assert_same_answers(want, got)
    assert_same_state(ref, p)


@pytest.mark.parametrize("kind", ["BetaTS", "UCB1", "LinUCB", "LinTS"])
@pytest.mark.parametrize("form", sorted(REWARD_FORMS))
def test_integer_and_bool_rewards_are_rewards(kind: str, form: str, backend: str) -> None:
    d = data(1)
    ref = make(kind, backend)
    want = run(ref, plain(d))
    r = REWARD_FORMS[form](d["rewards"])
    p = make(kind, backend)
    got = run(p, {**plain(d), "rewards": r,
                  "reward_row": lambda i: r[i] if not isinstance(r, pd.Series) else r.iloc[i]})
    assert_same_answers(want, got)
    assert_same_state(ref, p)


@pytest.mark.parametrize("kind", ["GaussianTS", "LinTS"])
@pytest.mark.parametrize("form", sorted(ARM_FORMS))
def test_arms_of_any_integer_dtype(kind: str, form: str, backend: str) -> None:
    d = data(2)
    ref, p = make(kind, backend), make(kind, backend)
    want = run(ref, plain(d))
    got = run(p, {**plain(d), "arms": ARM_FORMS[form](d["arms"])})
    assert_same_answers(want, got)
    assert_same_state(ref, p)


@pytest.mark.parametrize("kind", ["BetaTS", "LinUCB"])
@pytest.mark.parametrize("form", sorted(MASK_FORMS))
def test_masks_as_lists_and_frames(kind: str, form: str, backend: str) -> None:
    d = data(3)
    ref, p = make(kind, backend), make(kind, backend)
    want = run(ref, plain(d))
    f = MASK_FORMS[form]
    got = run(p, {**plain(d), "masks": f(d["masks"]),
                  "mask_row": lambda i: f(d["masks"][i:i + 1])[0] if form == "list"
                  else pd.Series(d["masks"][i])})
    assert_same_answers(want, got)
    assert_same_state(ref, p)


@pytest.mark.parametrize("kind", ["LinTS", "GaussianTS"])
def test_forms_mixed_call_by_call(kind: str, backend: str) -> None:
    """A caller switching forms between calls (float32, then float64, then a list, then a
    bad one) gets each call's answer as with float64 throughout."""
    d = data(8)
    ref, p = make(kind, backend), make(kind, backend)
    forms: list[Callable[[np.ndarray], Any]] = [
        lambda a: a.astype(np.float32), lambda a: a, lambda a: a, lambda a: a.tolist(),
        lambda a: a.astype(np.float16), lambda a: a]
    for i in range(24):
        f = forms[i % len(forms)]
        x = d["contexts"][i] if p.contextual else None
        fx = f(x) if x is not None else None
        m = d["masks"][i]
        assert p.select(fx, (m.tolist() if i % 2 else m) if i % 3 else None) == ref.select(
            x, d["masks"][i] if i % 3 else None)
        arm = int(d["arms"][i])
        p.update(arm, f(d["rewards"][i:i + 1])[0], fx)
        ref.update(arm, float(d["rewards"][i]), x)
        lo, hi = 5 * i, 5 * i + 5
        xs = d["contexts"][lo:hi] if p.contextual else None
        p.update_batch(f(d["arms"][lo:hi]) if i % 2 else d["arms"][lo:hi],
                       f(d["rewards"][lo:hi]), f(xs) if xs is not None else None)
        ref.update_batch(d["arms"][lo:hi], d["rewards"][lo:hi], xs)
        if i % 5 == 4:  # a bad call in between changes nothing and breaks nothing
            with pytest.raises(ValueError, match="rewards"):
                p.update_batch(d["arms"][:2], f(np.array([np.nan, 1.0])),
                               f(xs[:2]) if xs is not None else None)
        assert_same_state(ref, p)


def test_a_dataframe_row_is_a_context(backend: str) -> None:
    d = data(4)
    frame = pd.DataFrame(d["contexts"], columns=list("abcd"))
    ref, p = make("LinUCB", backend), make("LinUCB", backend)
    ref.update_batch(d["arms"], d["rewards"], d["contexts"])
    p.update_batch(pd.Series(d["arms"]), pd.Series(d["rewards"]), frame)
    for i in range(5):
        assert p.select(frame.iloc[i]) == ref.select(d["contexts"][i])
    np.testing.assert_array_equal(p.expectations(frame), ref.expectations(d["contexts"]))
    np.testing.assert_array_equal(p.expectations(frame.iloc[0]),
                                  ref.expectations(d["contexts"][0]))
    assert_same_state(ref, p)


def test_byte_swapped_floats_are_converted(backend: str) -> None:
    """A byte-swapped float64 array is converted like any other foreign form (the C++
    binding refuses non-native byte order instead of reading the bytes as they lie)."""
    d = data(7)
    ref, p = make("LinUCB", backend), make("LinUCB", backend)
    swapped = {**plain(d), "contexts": d["contexts"].astype(">f8"),
               "rewards": d["rewards"].astype(">f8"), "weights": d["weights"].astype(">f8"),
               "row": lambda i: d["contexts"][i].astype(">f8")}
    assert_same_answers(run(ref, plain(d)), run(p, swapped))
    assert_same_state(ref, p)


# --- the fast path: arrays already in the kernel's form are not touched -------------------

def test_kernel_form_arrays_go_straight_through(backend: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No conversion runs for C-contiguous float64 / int64 / bool arrays: the converters
    are replaced by ones that fail, and every call still succeeds."""
    d = data(5)

    def boom(obj: Any, field: str) -> Any:
        raise AssertionError(f"{field} was converted")

    p = make("LinTS", backend)
    for name in ("edge_float", "edge_int", "edge_bool"):
        monkeypatch.setattr(base, name, boom)
    p.update_batch(d["arms"], d["rewards"], d["contexts"], d["weights"])
    p.select_batch(d["contexts"], d["masks"])
    p.select(d["contexts"][0], d["masks"][0])
    p.update(1, 1.0, d["contexts"][0])
    # And a converted call does go through them.
    with pytest.raises(AssertionError, match="contexts was converted"):
        p.select_batch(d["contexts"].astype(np.float32))


def test_converters_return_kernel_form_arrays_themselves() -> None:
    x = np.zeros((3, 2))
    i = np.zeros(3, dtype=np.int64)
    m = np.ones(3, dtype=bool)
    assert _validation.edge_float(x, "x") is x
    assert _validation.edge_int(i, "arms") is i
    assert _validation.edge_bool(m, "masks") is m
    y = _validation.edge_float(x.astype(np.float32), "x")
    assert y.dtype == np.float64 and y.flags.c_contiguous


# --- rejected input: the field named, nothing learnt -----------------------------------

def trained(kind: str, backend: str) -> Policy:
    p = make(kind, backend)
    d = data(6)
    p.update_batch(d["arms"], d["rewards"], d["contexts"] if p.contextual else None)
    return p


BAD: list[tuple[str, Callable[[Policy], Any], str]] = [
    ("LinUCB", lambda p: p.update_batch([0, 1], [1, 0],
                                        pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"],
                                                      "c": [0.0, 1.0], "d": [1.0, 1.0]})),
     "contexts: column 'b' has dtype (object|str)"),
    ("LinUCB", lambda p: p.update_batch([0, 1], [1, 0], pd.DataFrame(
        {"a": [1.0, 2.0], "b": [0.5, 1.5], "c": pd.Series([0.0, 1.0], dtype=object),
         "d": [1.0, 1.0]})), "contexts: column 'c' has dtype object"),
    ("LinUCB", lambda p: p.update_batch([0, 1], [1, 0], np.array([[0.0] * D, [np.nan] * D],
                                                                 np.float32)),
     "contexts: expected finite values, found nan"),
    ("LinUCB", lambda p: p.update_batch([0, 1], [1, 0],
                                        pd.DataFrame([[0.0] * D, [None] * D], dtype="Float64")),
     "contexts: expected finite values, found nan"),
    ("LinUCB", lambda p: p.update_batch([0, 1], [1, 0], np.zeros((2, D + 1), np.float32)),
     "contexts"),
    ("LinUCB", lambda p: p.update_batch([0, 1, 2], [1, 0], np.zeros((3, D), np.float32)),
     "rewards"),
    ("LinUCB", lambda p: p.select(np.array(["a"] * D)), "context"),
    ("LinUCB", lambda p: p.select([1.0, [2.0, 3.0], 4.0, 5.0]), "context"),
    ("LinUCB", lambda p: p.select(pd.Series(pd.to_datetime(["2024-01-01"] * D))), "context"),
    ("LinUCB", lambda p: p.expectations(np.zeros(D + 2, np.float32)), "contexts"),
    ("BetaTS", lambda p: p.update_batch([0, 1], np.array([1, 2], np.int8)), "rewards"),
    ("BetaTS", lambda p: p.update_batch([0.0, 1.0], [1, 0]), "arms"),
    ("BetaTS", lambda p: p.update_batch(np.array([True, False]), [1, 0]), "arms"),
    ("BetaTS", lambda p: p.update_batch(pd.Series([0, None], dtype="Int64"), [1, 0]),
     "arms: expected no missing values"),
    ("BetaTS", lambda p: p.update_batch(np.array([0, 2**63], np.uint64), [1, 0]),
     "arms: expected values in the int64 range"),
    ("BetaTS", lambda p: p.update_batch(pd.Series(["a", "b"]), [1, 0]), "arms"),
    ("BetaTS", lambda p: p.update_batch([0, 1], pd.Series([1.0, np.nan])), "rewards"),
    ("BetaTS", lambda p: p.update_batch([0, 1], pd.Series(["1", "0"])),
     "rewards: got dtype (object|str)"),
    ("BetaTS", lambda p: p.update_batch([0, 1], pd.Series(["1", "0"], dtype="category",
                                                           name="won")),
     "rewards: column 'won' has dtype category"),
    ("BetaTS", lambda p: p.update_batch([0, 1], [1, 0], weights=pd.Series([1, -1])),
     "weights"),
    ("BetaTS", lambda p: p.select(mask=np.ones(K, np.int8)), "mask"),
    ("BetaTS", lambda p: p.select(mask=[True] * (K + 1)), "mask"),
    ("BetaTS", lambda p: p.select_batch(masks=pd.DataFrame(np.ones((3, K), np.int64))),
     "masks"),
    ("BetaTS", lambda p: p.select_batch(n=2, biases=pd.DataFrame(np.full((2, K), np.nan))),
     "biases"),
    ("BetaTS", lambda p: p.action_probabilities(masks=pd.DataFrame({"a": ["x"] * 2})),
     "masks: column 'a' has dtype (object|str)"),
]


@pytest.mark.parametrize(("kind", "call", "message"), BAD,
                         ids=[f"{i}-{c[0]}-{c[2].split(':')[0]}" for i, c in enumerate(BAD)])
def test_what_cannot_be_converted_is_rejected_naming_the_field(
        kind: str, call: Callable[[Policy], Any], message: str, backend: str) -> None:
    p = trained(kind, backend)
    before = p.state_dict()
    with pytest.raises(ValueError, match=message):
        call(p)
    after = p.state_dict()
    for name in before["arrays"]:
        np.testing.assert_array_equal(before["arrays"][name], after["arrays"][name],
                                      err_msg=name)


# --- ArmIndex ------------------------------------------------------------------------------

def test_arm_index_round_trips_any_hashable_labels() -> None:
    labels = ["10%", 20, ("bundle", 3), None, 2.5]
    idx = ArmIndex(labels)
    assert len(idx) == 5 and idx.labels == labels
    for i, lab in enumerate(labels):
        assert idx.index(lab) == i and idx.label(i) == lab
    got = idx.indices([20, "10%", ("bundle", 3), 20])
    assert got.dtype == np.int64 and got.tolist() == [1, 0, 2, 1]
    assert idx.labels_of(np.array([4, 3, 0])) == [2.5, None, "10%"]
    assert ArmIndex.from_dict(idx.to_dict()) == idx


def test_arm_index_vectorised_lookup_of_arrays_and_series() -> None:
    idx = ArmIndex(np.array(["a", "b", "c"]))
    assert idx.labels == ["a", "b", "c"] and all(type(x) is str for x in idx.labels)
    rs = np.random.default_rng(0)
    raw = rs.choice(np.array(["a", "b", "c"]), 1000)
    want = np.array([{"a": 0, "b": 1, "c": 2}[s] for s in raw])
    np.testing.assert_array_equal(idx.indices(raw), want)
    np.testing.assert_array_equal(idx.indices(pd.Series(raw)), want)
    ints = ArmIndex([10, 20, 30])
    np.testing.assert_array_equal(ints.indices(np.array([30, 10], np.int32)), [2, 0])


def test_arm_index_errors_name_the_unknown_label() -> None:
    idx = ArmIndex(["a", "b"])
    with pytest.raises(ValueError, match=r"arm: unknown arm 'z'"):
        idx.index("z")
    with pytest.raises(ValueError, match=r"arms: unknown arm 'q' at position 2"):
        idx.indices(["a", "b", "q"])
    with pytest.raises(ValueError, match=r"arms: unknown arm 'q' at position 1"):
        idx.indices(np.array(["a", "q", "b"]))
    with pytest.raises(ValueError, match=r"arms: unknown arm \[1\] at position 0"):
        idx.indices([[1]])
    with pytest.raises(ValueError, match=r"labels\[2\]: duplicate arm label 'a'"):
        ArmIndex(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"labels\[1\]: an arm label must be hashable"):
        ArmIndex(["a", ["b"]])
    with pytest.raises(ValueError, match="NaN"):
        ArmIndex([1.0, float("nan")])
    with pytest.raises(ValueError, match="arm: 5 is out of range"):
        idx.label(5)
    with pytest.raises(ValueError, match="arm: 'a' is already an arm"):
        idx.add("a")


def test_arm_index_follows_the_policy_through_add_and_remove(backend: str) -> None:
    idx = ArmIndex(["a", "b", "c"])
    p = BetaTS(len(idx), seed=1, backend=backend, propensity_draws=16)
    idx.check_policy(p)
    assert idx.add("d") == p.add_arm() == 3
    p.remove_arm(idx.remove("b"))
    idx.check_policy(p)
    assert "b" not in idx and "d" in idx and idx.labels == ["a", "c", "d"]
    # A late reward for the removed label still lands on its slot.
    p.update_batch(idx.indices(["b", "d", "d"]), [1, 1, 0])
    np.testing.assert_array_equal(p.counts, [0, 1, 0, 2])
    arms, _ = p.select_batch(n=200)
    assert set(idx.labels_of(arms)) <= {"a", "c", "d"}
    # Re-adding a removed label gives a fresh slot, as a fresh arm of the policy.
    assert idx.add("b") == p.add_arm() == 4
    assert idx.index("b") == 4 and idx.label(1) == "b"
    idx.check_policy(p)
    assert ArmIndex.from_dict(idx.to_dict()) == idx
    with pytest.raises(ValueError, match="arm: unknown arm 'zz'"):
        idx.remove("zz")
    only = ArmIndex(["x"])
    with pytest.raises(ValueError, match="last active arm"):
        only.remove("x")
    with pytest.raises(ValueError, match="policy: has 5 arms"):
        ArmIndex(["a"]).check_policy(p)


def test_arm_index_from_a_catalogue_of_offers() -> None:
    from promobandit.offers import Catalogue, PercentOff

    cat = Catalogue(tuple(PercentOff(id=f"pct-{k}", fraction=k / 10) for k in (1, 2, 3)))
    idx = ArmIndex.from_catalogue(cat)
    assert idx.labels == ["pct-1", "pct-2", "pct-3"]
    assert idx.index("pct-2") == 1 and idx.label(2) == "pct-3"
    with pytest.raises(ValueError, match="catalogue"):
        ArmIndex.from_catalogue(object())
    with pytest.raises(ValueError, match="unknown arm 'pct-9'"):
        idx.indices(["pct-1", "pct-9"])


def test_readme_using_the_policies_section_runs() -> None:
    from .readme import readme_section, run_python_blocks

    section = readme_section("Using the policies")
    assert section is not None and "Inputs as you have them" in section
    ns = run_python_blocks(section)
    assert ns["arms"].label(ns["arm"]) in ("10%", "20%", "free-shipping")
