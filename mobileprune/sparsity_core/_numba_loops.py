"""The numba loops behind `compiled` (imported only when numba is installed).

Module-level functions, so that numba's on-disk cache finds them again in the
next process instead of compiling them anew.
"""

from __future__ import annotations

import numba
import numpy as np

compile_loop = numba.njit(nogil=True, cache=True, boundscheck=False)

# Unsigned constants: numba turns uint64 mixed with a signed integer into a float.
_ONE = np.uint64(1)
_BYTE_ONES = np.uint64(0x0101010101010101)  # 1 in every byte
_TOP_BYTE = np.uint64(56)


@compile_loop
def flag_chunk(values, low, guess, high, zero, keep, zeroed, inside):
    # Branch-free, so that it vectorises: the flags go into bytes, the counts into integers.
    # The counts stay 32-bit (numba widens a plain `+=` to 64 bits, which vectorises to a
    # quarter of the lanes): `sweep` calls this on chunks far shorter than 2**31.
    keep_bytes, inside_bytes = keep.view(np.uint8), inside.view(np.uint8)
    above_low = np.int32(0)
    inside_count = np.int32(0)
    nan_count = np.int32(0)
    for i in range(values.size):
        value = values[i]
        magnitude = abs(value)
        kept = np.uint8(magnitude > guess)
        over_low = np.uint8(magnitude > low)
        within = over_low & np.uint8(magnitude <= high)
        keep_bytes[i] = kept
        inside_bytes[i] = within
        zeroed[i] = value if kept else zero
        above_low = np.int32(above_low + np.int32(over_low))
        inside_count = np.int32(inside_count + np.int32(within))
        nan_count = np.int32(nan_count + np.int32(magnitude != magnitude))
    return above_low, inside_count, nan_count


@compile_loop
def sweep(values, low, guess, high, zero, keep, zeroed, positions, magnitudes, scratch):
    size, chunk, capacity = values.size, scratch.size, positions.size
    words = scratch.view(np.uint64)
    inside = 0
    above_low = 0
    nan_count = 0
    for start in range(0, size, chunk):
        stop = min(size, start + chunk)
        flags = scratch[: stop - start]
        low_count, inside_count, nan_in_chunk = flag_chunk(
            values[start:stop], low, guess, high, zero, keep[start:stop], zeroed[start:stop], flags
        )
        above_low += low_count
        nan_count += nan_in_chunk
        if inside_count == 0:
            continue
        if inside + inside_count > capacity:
            inside += inside_count  # count on, store nothing more: the caller retries
            continue
        # Visit only the flagged bytes: in a word, the lowest set bit is 1 << (8 * byte), and
        # `byte` is the number of whole bytes below it. Looping over all 8 bytes of each
        # nonzero word was slower: most such words hold a single flagged byte.
        whole = flags.size // 8
        for word in range(whole):
            bits = words[word]
            while bits:
                lowest = bits & (~bits + _ONE)
                byte = (((lowest - _ONE) & _BYTE_ONES) * _BYTE_ONES) >> _TOP_BYTE
                i = start + word * 8 + np.int64(byte)
                positions[inside] = i
                magnitudes[inside] = abs(values[i])
                inside += 1
                bits ^= lowest
        for i in range(whole * 8, flags.size):
            if flags[i]:
                positions[inside] = start + i
                magnitudes[inside] = abs(values[start + i])
                inside += 1
    return inside, above_low, nan_count


@compile_loop
def settle_inside(values, keep, zeroed, positions, magnitudes, guess, threshold, ties_pruned, zero):
    # `sweep` kept the bracket's weights above `guess`, the sample's estimate of `threshold`.
    # Only those between the two (and the kept ties) change: list them branch-free (a weight
    # of the bracket is on either side of the threshold by a coin toss), then write those.
    changed = np.empty(positions.size, dtype=np.int64)
    count = 0
    ties = 0
    for j in range(positions.size):
        magnitude = magnitudes[j]
        changed[count] = j
        count += np.int64((magnitude > guess) != (magnitude > threshold))
        ties += np.int64(magnitude == threshold)
    for n in range(count):
        j = changed[n]
        position = positions[j]
        kept = magnitudes[j] > threshold
        keep[position] = kept
        zeroed[position] = values[position] if kept else zero
    if ties > ties_pruned:  # the ties after the first `ties_pruned`, in index order, are kept
        seen = 0
        for j in range(positions.size):
            if magnitudes[j] == threshold:
                seen += 1
                if seen > ties_pruned:
                    keep[positions[j]] = True
                    zeroed[positions[j]] = values[positions[j]]


@compile_loop
def gather_magnitudes(values, indices, sample):
    for j in range(indices.size):
        sample[j] = abs(values[indices[j]])
