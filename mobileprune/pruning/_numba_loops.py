"""The numba loops behind `compiled` (imported only when numba is installed).

Module-level functions, so that numba's on-disk cache finds them again in the
next process instead of compiling them anew.
"""

from __future__ import annotations

import numba
import numpy as np

compile_loop = numba.njit(nogil=True, cache=True, boundscheck=False)


@compile_loop
def flag_chunk(values, low, high, zero, keep, zeroed, inside):
    # Branch-free, so that it vectorises: the flags go into bytes, the counts into integers.
    keep_bytes, inside_bytes = keep.view(np.uint8), inside.view(np.uint8)
    above_high = 0
    above_low = 0
    nan_count = 0
    for i in range(values.size):
        value = values[i]
        magnitude = abs(value)
        kept = np.uint8(magnitude > high)
        over_low = np.uint8(magnitude > low)
        keep_bytes[i] = kept
        inside_bytes[i] = over_low ^ kept  # above `high` implies above `low`
        zeroed[i] = value if kept else zero
        above_high += np.int32(kept)
        above_low += np.int32(over_low)
        nan_count += np.int32(magnitude != magnitude)
    return above_high, above_low, nan_count


@compile_loop
def sweep(values, low, high, zero, keep, zeroed, positions, magnitudes, scratch):
    size, chunk, capacity = values.size, scratch.size, positions.size - 1
    words = scratch.view(np.uint64)
    inside = 0
    above_high = 0
    nan_count = 0
    for start in range(0, size, chunk):
        stop = min(size, start + chunk)
        flags = scratch[: stop - start]
        high_count, low_count, nan_in_chunk = flag_chunk(
            values[start:stop], low, high, zero, keep[start:stop], zeroed[start:stop], flags
        )
        above_high += high_count
        nan_count += nan_in_chunk
        if low_count == high_count:
            continue
        if inside + low_count - high_count > capacity:
            inside += low_count - high_count  # count on, store nothing more: the caller retries
            continue
        # Store every candidate and advance only past the flagged ones: no branch per weight.
        whole = flags.size // 8
        for word in range(whole):
            bits = words[word]
            if bits:
                for byte in range(8):
                    i = word * 8 + byte
                    positions[inside] = start + i
                    magnitudes[inside] = abs(values[start + i])
                    inside += np.int64((bits >> np.uint64(8 * byte)) & np.uint64(1))
        for i in range(whole * 8, flags.size):
            if flags[i]:
                positions[inside] = start + i
                magnitudes[inside] = abs(values[start + i])
                inside += 1
    return inside, above_high, nan_count


@compile_loop
def keep_above(values, keep, zeroed, positions, magnitudes, threshold, ties_pruned):
    # Only the kept weights are touched: each is a scattered access (a branch-free loop
    # that writes every weight of the bracket was twice as slow).
    ties_seen = 0
    for j in range(positions.size):
        magnitude = magnitudes[j]
        if magnitude < threshold:
            continue
        if magnitude == threshold:
            ties_seen += 1
            if ties_seen <= ties_pruned:
                continue
        position = positions[j]
        keep[position] = True
        zeroed[position] = values[position]
