"""Bounded-memory summaries: a quantile reservoir, a distinct counter and a top-values counter."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HUGE_STRING = 4096  # longer cells are hashed one by one
HLL_PRECISION = 14  # 16,384 one-byte registers, about 0.8% standard error
_U64 = np.uint64
_MASK_REST = _U64((1 << (64 - HLL_PRECISION)) - 1)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads any uint64 input evenly over 64 bits."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def hash_strings(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """64-bit hashes of non-null strings, vectorised over Arrow's buffers (no Python objects).

    Strings are folded eight bytes at a time, all strings of a batch in step, so the
    cost is a few array operations per 8 bytes of the longest common string length.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    if not len(values):
        return np.empty(0, dtype=_U64)
    _, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[values.offset: values.offset + len(values) + 1]
    starts = (offsets[:-1] - offsets[0]).astype(np.int64)
    lengths = np.diff(offsets).astype(np.int64)
    # Pad with 8 zero bytes so an 8-byte read at any string start stays in bounds.
    data = np.zeros(int(offsets[-1] - offsets[0]) + 8, dtype=np.uint8)
    if data_buf is not None:
        data[:-8] = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]: offsets[-1]]
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # a word at every byte
    hashes = _mix(lengths.astype(_U64) * _GOLDEN)
    huge = lengths > HUGE_STRING
    index = np.flatnonzero((lengths > 0) & ~huge)
    position, remaining = starts[index], lengths[index]
    while len(index):
        word = words[position] & _TAIL_MASKS[np.minimum(remaining, 8)]
        hashes[index] = _mix(hashes[index] ^ word)
        position, remaining = position + 8, remaining - 8
        more = remaining > 0
        index, position, remaining = index[more], position[more], remaining[more]
    for i in np.flatnonzero(huge):  # rare: one vectorised pass per very long cell
        cell = data[starts[i]: starts[i] + lengths[i] + 7]
        cell_words = np.ndarray(((lengths[i] + 7) // 8,), dtype="<u8", buffer=cell.copy(), strides=(8,))
        cell_words[-1] &= _TAIL_MASKS[min(8, lengths[i] - 8 * (len(cell_words) - 1))]
        salted = _mix(cell_words ^ (np.arange(len(cell_words), dtype=_U64) * _GOLDEN))
        hashes[i] = _mix(np.array([hashes[i] ^ salted.sum()], dtype=_U64))[0]
    return hashes


_GOLDEN = _U64(0x9E3779B97F4A7C15)
# _TAIL_MASKS[k] keeps the first k bytes of a little-endian word.
_TAIL_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=_U64)


class HyperLogLog:
    """Approximate distinct count in fixed memory, fed with 64-bit hashes."""

    def __init__(self) -> None:
        self.registers = np.zeros(1 << HLL_PRECISION, dtype=np.uint8)

    def add(self, hashes: np.ndarray) -> None:
        """Fold a batch of hashes into the registers."""
        if not len(hashes):
            return
        index = (hashes >> _U64(64 - HLL_PRECISION)).astype(np.intp)
        rest = (hashes & _MASK_REST).astype(np.float64)  # < 2**50: exact in a double
        bit_length = np.frexp(rest)[1]  # 0 for rest == 0
        rank = ((64 - HLL_PRECISION) - bit_length + 1).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def estimate(self) -> int:
        """The estimated number of distinct values added so far."""
        m = float(len(self.registers))
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * np.log(m / zeros))  # linear counting is better for small counts
        return round(raw)


class Reservoir:
    """A uniform random sample of bounded size, for quantiles of an unbounded stream."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.rng = rng
        self.keys = np.empty(0)
        self.values = np.empty(0)

    def add(self, values: np.ndarray) -> None:
        """Offer a batch; each value keeps a random key and the smallest keys stay."""
        keys = self.rng.random(len(values))
        if len(self.keys) >= self.capacity:
            keep = keys < self.keys.max()
            keys, values = keys[keep], values[keep]
        keys = np.concatenate([self.keys, keys])
        values = np.concatenate([self.values, values])
        if len(keys) > self.capacity:
            chosen = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            keys, values = keys[chosen], values[chosen]
        self.keys, self.values = keys, values

    def quantiles(self, qs: tuple[float, ...]) -> list[float] | None:
        """Quantiles of the sample (exact while the stream fits in the reservoir)."""
        if not len(self.values):
            return None
        return [float(v) for v in np.quantile(self.values, qs)]


class ValueCounter:
    """Exact value counts up to a bound; past it, a HyperLogLog and heavy hitters only.

    Counts live in a small Arrow table, merged by dictionary-encoding and summing, so no
    Python code runs per value. Past the bound, top values are approximate.
    """

    def __init__(self, exact_limit: int, top_per_batch: int = 64) -> None:
        self.exact_limit = exact_limit
        self.top_per_batch = top_per_batch
        self.counts = pa.table({"values": pa.array([], pa.string()), "counts": pa.array([], pa.int64())})
        self.hll: HyperLogLog | None = None

    @property
    def approximate(self) -> bool:
        """True once the distinct count comes from the sketch."""
        return self.hll is not None

    def add(self, values: pa.ChunkedArray, want_top: bool) -> None:
        """Count a batch of non-null strings."""
        if self.hll is None:
            self._merge(_value_counts(values))
            if self.counts.num_rows > self.exact_limit:
                self.hll = HyperLogLog()
                self.hll.add(hash_strings(self.counts.column("values")))
                self._prune()
        elif want_top:
            counted = _value_counts(values)
            self.hll.add(hash_strings(counted.column("values")))
            if counted.num_rows > self.top_per_batch:
                heaviest = np.argpartition(-counted.column("counts").to_numpy(), self.top_per_batch)
                counted = counted.take(pa.array(heaviest[: self.top_per_batch]))
            self._merge(counted)
            if self.counts.num_rows > 2 * self.exact_limit:
                self._prune()
        else:
            self.hll.add(hash_strings(values))

    def distinct(self) -> int:
        """Exact distinct count, or the sketch's estimate once past the bound."""
        if self.hll is None:
            return self.counts.num_rows
        return max(self.hll.estimate(), self.exact_limit + 1)

    def top(self, n: int = 5) -> list[list]:
        """The n most frequent values with their counts, most frequent first."""
        ranked = self.counts.sort_by([("counts", "descending"), ("values", "ascending")]).slice(0, n)
        return [[row["values"], row["counts"]] for row in ranked.to_pylist()]

    def _merge(self, counted: pa.Table) -> None:
        """Add a batch's (value, count) table to the running counts."""
        both = pa.concat_tables([self.counts, counted])
        values = both.column("values").combine_chunks()
        counts = both.column("counts").to_numpy()
        encoded = pc.dictionary_encode(values)
        sums = np.bincount(encoded.indices.to_numpy(), weights=counts, minlength=len(encoded.dictionary))
        self.counts = pa.table({"values": encoded.dictionary, "counts": sums.astype(np.int64)})

    def _prune(self) -> None:
        """Keep only the heaviest values so memory stays bounded."""
        ranked = self.counts.sort_by([("counts", "descending")])
        self.counts = ranked.slice(0, self.exact_limit)


def _value_counts(values: pa.ChunkedArray) -> pa.Table:
    """A batch's distinct values and how often each occurs, as a two-column table."""
    counted = pc.value_counts(values)
    return pa.Table.from_batches([pa.RecordBatch.from_struct_array(counted)])
