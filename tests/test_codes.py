"""Policy kind codes and counter slots: one definition (state.hpp), read everywhere.

``_core`` exports the codes of ``cpp/include/promobandit/state.hpp``; the policies
read them through ``policies/_codes.py``, and the Numba backend keeps a copy for
installs without ``_core``. The values are pinned here too: saved policy states
carry the counter array by slot, so renumbering would misread old states.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from promobandit import _backends
from promobandit._numba import codes as numba_codes
from promobandit._numba import kernels as numba_kernels
from promobandit._numba import linear as numba_linear
from promobandit._numba import multiarmed as numba_multiarmed
from promobandit.policies import POLICIES, _codes, base

PINNED_KINDS = {
    "BETA_TS": 0, "GAUSSIAN_TS": 1, "UCB1": 2, "UCB_TUNED": 3, "EPSILON_GREEDY": 4,
    "SOFTMAX": 5, "LIN_UCB": 0, "LIN_TS": 1,
}
PINNED_SLOTS = {"DECISIONS": 0, "UPDATES": 1, "PROPENSITY_AT": 2, "SEED": 3}

# Each policy class and the code name its kernel is built with.
CLASS_KINDS = {
    "BetaTS": "BETA_TS", "GaussianTS": "GAUSSIAN_TS", "UCB1": "UCB1", "UCBTuned": "UCB_TUNED",
    "EpsilonGreedy": "EPSILON_GREEDY", "Softmax": "SOFTMAX", "LinUCB": "LIN_UCB",
    "LinTS": "LIN_TS",
}


def test_core_exports_the_pinned_codes() -> None:
    assert _backends.has_cpp(), _backends._why_missing("cpp")
    core = _backends.core()
    assert core.POLICY_KINDS == PINNED_KINDS
    assert core.COUNTER_SLOTS == PINNED_SLOTS


def test_python_reads_the_codes_from_core() -> None:
    core = _backends.core()
    assert _codes.POLICY_KINDS == core.POLICY_KINDS
    assert _codes.COUNTER_SLOTS == core.COUNTER_SLOTS
    for name, code in core.POLICY_KINDS.items():
        assert getattr(_codes, name) == code, name
    for name, slot in core.COUNTER_SLOTS.items():
        assert getattr(_codes, f"CTR_{name}") == slot, name
        assert getattr(base, f"CTR_{name}") == slot, name
    assert _codes.N_COUNTERS == base.N_COUNTERS == len(core.COUNTER_SLOTS)


def test_the_numba_copy_equals_core() -> None:
    core = _backends.core()
    assert numba_codes.POLICY_KINDS == core.POLICY_KINDS
    assert numba_codes.COUNTER_SLOTS == core.COUNTER_SLOTS
    for name, code in core.POLICY_KINDS.items():
        assert getattr(numba_codes, name) == code, name
    for name, slot in core.COUNTER_SLOTS.items():
        assert getattr(numba_codes, f"CTR_{name}") == slot, name
    assert numba_codes.N_COUNTERS == len(core.COUNTER_SLOTS)
    # the kernels compile against the same objects, not copies of their own
    assert numba_multiarmed.BETA_TS is numba_codes.BETA_TS
    assert numba_multiarmed.CTR_PROPENSITY_AT is numba_codes.CTR_PROPENSITY_AT
    assert numba_linear.LIN_UCB is numba_codes.LIN_UCB
    assert numba_kernels.CTR_SEED is numba_codes.CTR_SEED


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_is_built_with_its_named_code(name: str) -> None:
    assert POLICIES[name]._kind == _codes.POLICY_KINDS[CLASS_KINDS[name]]


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_counters_are_laid_out_by_slot(backend: str) -> None:
    counters = base.new_counters(2**64 - 3)
    assert counters.shape == (_codes.N_COUNTERS,)
    assert counters[_codes.CTR_PROPENSITY_AT] == -1
    assert counters[_codes.CTR_SEED:].view(np.uint64)[0] == 2**64 - 3
    p = POLICIES["BetaTS"](3, seed=11, backend=backend, propensity_draws=8)
    p.select()
    p.select_batch(n=4)
    p.update(0, 1.0)
    c = p.state_dict()["arrays"]["counters"]
    assert c[_codes.CTR_DECISIONS] == 5
    assert c[_codes.CTR_UPDATES] == 1
    assert c[_codes.CTR_PROPENSITY_AT] == 0  # filled at version 0, not refreshed since
    assert c[_codes.CTR_SEED:].view(np.uint64)[0] == 11


def test_kernels_reject_an_unknown_kind() -> None:
    core = _backends.core()
    arrays = POLICIES["BetaTS"](3, seed=1, backend="cpp").state_dict()["arrays"]
    with pytest.raises(ValueError, match="kind: unknown policy kind"):
        core.MabKernel(max(PINNED_KINDS.values()) + 1, 1.0, [1.0, 1.0], 0, 1, arrays)


def test_without_core_the_numba_copy_serves() -> None:
    """A Numba-only install (no _core): the codes come from the Numba backend's copy."""
    code = (
        "import sys, warnings; warnings.simplefilter('ignore'); "
        "sys.modules['promobandit._core'] = None\n"
        "from promobandit import _backends\n"
        "from promobandit._numba import codes\n"
        "from promobandit.policies import _codes, BetaTS\n"
        "assert not _backends.has_cpp()\n"
        "assert _codes.POLICY_KINDS is codes.POLICY_KINDS\n"
        "assert _codes.COUNTER_SLOTS is codes.COUNTER_SLOTS\n"
        "assert BetaTS(3, seed=1).select()[0] in (0, 1, 2)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
