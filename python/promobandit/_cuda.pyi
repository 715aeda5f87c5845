# Type stubs of promobandit._cuda, the optional CUDA scorer (cpp/cuda/cuda_module.cpp),
# built only where a CUDA toolkit is found (never in the published wheels). Pointers are
# integer device addresses (tensor.data_ptr(); 0 for an absent input);
# tests/test_stubs.py holds the names and parameter lists here equal to the bindings'.

max_k: int

def device_count() -> int: ...
def workspace_bytes(n_items: int, n_users: int, k: int) -> int: ...
def topk_softmax(
    items: int,
    item_type: int,
    n_items: int,
    dim: int,
    users: int,
    n_users: int,
    k: int,
    temperature: float,
    bias: int,
    mask: int,
    mask_per_user: bool,
    excl: int,
    excl_cols: int,
    excl_per_user: bool,
    ids: int,
    scores: int,
    probs_topk: int,
    probs_full: int,
    log_normalizer: int,
    workspace: int,
    workspace_bytes: int,
    status: int,
    device: int,
    stream: int,
) -> None: ...
