"""Numba fallbacks of the native kernels, with the same semantics bit for bit.

Each module mirrors one header of ``cpp/include/promobandit`` operation for
operation, so that a seed gives the same draws and decisions on both backends.
"""
