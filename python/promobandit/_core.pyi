# Type stubs of promobandit._core, the C++ kernels (cpp/bindings/*.cpp). Arguments the
# bindings check and convert themselves (arrays, optional masks, outputs) are typed as
# what they accept; tests/test_stubs.py holds every public name and parameter list here
# equal to the built module's.
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__version__: str
# name -> code of every policy kind, and name -> index into a policy's int64 counters
# (cpp/include/promobandit/state.hpp).
POLICY_KINDS: dict[str, int]
COUNTER_SLOTS: dict[str, int]

# -- counter-based RNG (rng_bindings.cpp) --------------------------------------------------
def philox4x32_10(counter: list[int] | tuple[int, int, int, int],
                  key: list[int] | tuple[int, int]) -> list[int]: ...
def rng_u32(seed: int, stream: int, purpose: int, n: int) -> NDArray[np.uint32]: ...
def rng_uniform(seed: int, stream: int, purpose: int, n: int) -> NDArray[np.float64]: ...
def rng_normal(seed: int, stream: int, purpose: int, n: int) -> NDArray[np.float64]: ...
def rng_gamma(seed: int, stream: int, purpose: int, shape: float,
              n: int) -> NDArray[np.float64]: ...
def rng_beta(seed: int, stream: int, purpose: int, a: float, b: float,
             n: int) -> NDArray[np.float64]: ...

# -- top-k softmax scoring (topk_bindings.cpp) ---------------------------------------------
def topk_softmax(
    items: ArrayLike,
    users: ArrayLike,
    k: int,
    temperature: float = 1.0,
    mask: ArrayLike | None = None,
    exclude: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    n_threads: int = 0,
    item_type: str = "float32",
    out_ids: NDArray[np.int64] | None = None,
    out_scores: NDArray[np.float32] | None = None,
    out_probs_topk: NDArray[np.float64] | None = None,
    out_probs_full: NDArray[np.float64] | None = None,
    out_log_normalizer: NDArray[np.float64] | None = None,
    isa: str = "auto",
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float64], NDArray[np.float64],
           NDArray[np.float64]]: ...
def topk_isa() -> str: ...
def topk_isa_supported(isa: str) -> bool: ...

# -- bandit kernels (policy_bindings.cpp) --------------------------------------------------
class MabKernel:
    def __init__(self, kind: int, decay: float, hyper: list[float] | tuple[float, ...],
                 propensity_draws: int, propensity_refresh: int,
                 arrays: dict[str, NDArray[Any]], propensity_method: int = 0,
                 first_on_ties: bool = False) -> None: ...
    def select(self, context: ArrayLike | None = None, mask: ArrayLike | None = None,
               bias: ArrayLike | None = None) -> tuple[int, float]: ...
    def select_batch(
        self,
        contexts: ArrayLike | None = None,
        masks: ArrayLike | None = None,
        n: int | None = None,
        out_arms: NDArray[np.int64] | None = None,
        out_props: NDArray[np.float64] | None = None,
        n_threads: int = 1,
        biases: ArrayLike | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]: ...
    def update(self, arm: int, reward: float, context: ArrayLike | None = None,
               weight: float = 1.0) -> None: ...
    def update_batch(self, arms: ArrayLike, rewards: ArrayLike,
                     contexts: ArrayLike | None = None,
                     weights: ArrayLike | None = None) -> None: ...
    def expectations(self) -> NDArray[np.float64]: ...
    def action_probabilities(self, masks: ArrayLike | None = None, n: int | None = None,
                             draws: int = 1000,
                             biases: ArrayLike | None = None) -> NDArray[np.float64]: ...
    def rebind(self, arrays: dict[str, NDArray[Any]]) -> None: ...
    def lock(self) -> None: ...
    def unlock(self) -> None: ...
    @property
    def n_arms(self) -> int: ...

class LinKernel:
    def __init__(self, kind: int, decay: float, exploration: float, ridge: float,
                 refresh_every: int, propensity_draws: int,
                 arrays: dict[str, NDArray[Any]], propensity_method: int = 0,
                 first_on_ties: bool = False) -> None: ...
    def select(self, context: ArrayLike | None = None, mask: ArrayLike | None = None,
               bias: ArrayLike | None = None) -> tuple[int, float]: ...
    def select_batch(
        self,
        contexts: ArrayLike | None = None,
        masks: ArrayLike | None = None,
        n: int | None = None,
        out_arms: NDArray[np.int64] | None = None,
        out_props: NDArray[np.float64] | None = None,
        n_threads: int = 1,
        biases: ArrayLike | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]: ...
    def update(self, arm: int, reward: float, context: ArrayLike | None = None,
               weight: float = 1.0) -> None: ...
    def update_batch(self, arms: ArrayLike, rewards: ArrayLike,
                     contexts: ArrayLike | None = None,
                     weights: ArrayLike | None = None) -> None: ...
    def expectations(self, contexts: ArrayLike) -> NDArray[np.float64]: ...
    def action_probabilities(self, contexts: ArrayLike, masks: ArrayLike | None = None,
                             draws: int = 1000, n_threads: int = 1,
                             biases: ArrayLike | None = None) -> NDArray[np.float64]: ...
    def refresh_all(self) -> None: ...
    def rebind(self, arrays: dict[str, NDArray[Any]]) -> None: ...
    def lock(self) -> None: ...
    def unlock(self) -> None: ...
    @property
    def n_arms(self) -> int: ...
    @property
    def dim(self) -> int: ...
