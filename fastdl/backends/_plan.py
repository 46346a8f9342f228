"""How the CPU backends cut work into blocks (shared by Cython and Numba)."""

# Each thread im2cols a block of about this many bytes into its own workspace slot,
# small enough to stay in its core's L2 cache while its GEMM reads it.
IM2COL_BLOCK_BYTES = 512 << 10


def block(units, unit_bytes, threads):
    """Units per block: blocks of about IM2COL_BLOCK_BYTES, a multiple of `threads` of them."""
    blocks = max(1, -(-units * unit_bytes // IM2COL_BLOCK_BYTES))
    blocks = -(-blocks // threads) * threads
    return max(1, -(-units // blocks))
