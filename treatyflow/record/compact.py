"""The log's frontier: the RFC 9162 tree of the first ``size`` entries as its peaks alone.

The peaks are the roots of the perfect subtrees the binary digits of ``size`` cut the log
into (a "compact range", as transparency-dev's merkle calls it): O(log size) hashes. They
are all a tree over the log and some new leaves needs for its root and for the inclusion
proof of any new leaf: every sibling on such a leaf's path that lies among the old leaves
is one of the peaks (a perfect subtree left of the leaf; its parent holds the leaf, so it
is no smaller than the peak it sits in). The hub's receipts task keeps one frontier in
memory, built from the rows once at start and extended by each batch's leaves only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from treatyflow.agency.merkle import EMPTY_ROOT, MerkleTree, node_hash, split


def _peak_ranges(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees [lo, hi) of the tree of ``size`` leaves, left to right."""
    out, lo = [], 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            out.append((lo, lo + (1 << bit)))
            lo += 1 << bit
    return out


class Frontier:
    """The peaks of the tree of the first ``size`` leaves."""

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        ranges = _peak_ranges(size)
        if len(ranges) != len(peaks):
            raise ValueError(f"a tree of {size} leaves has {len(ranges)} peaks, not "
                             f"{len(peaks)}")
        self.size = size
        self.peaks = dict(zip(ranges, peaks, strict=True))

    @classmethod
    def of(cls, leaf_hashes: Iterable[bytes]) -> Frontier:
        """The frontier of the tree of these leaf hashes, in one pass."""
        builder = Builder()
        for leaf in leaf_hashes:
            builder.push(leaf)
        return builder.frontier()

    def root(self) -> bytes:
        if not self.peaks:
            return EMPTY_ROOT
        hashes = list(self.peaks.values())
        value = hashes[-1]
        for peak in reversed(hashes[:-1]):
            value = node_hash(peak, value)
        return value

    def extend(self, leaf_hashes: Sequence[bytes]) -> Extended:
        """The tree of these leaves after the frontier's (root, inclusion proofs of the
        new leaves); ``Extended.frontier()`` is the next frontier."""
        return Extended(self, list(leaf_hashes))


class Builder:
    """A frontier built leaf by leaf (a binary counter: each leaf merged with the peaks
    of its height), in O(log n) memory: the receipts task's start over every row."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), the largest first
        self.size = 0

    def push(self, leaf: bytes) -> None:
        height, value = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            value = node_hash(self._stack.pop()[1], value)
            height += 1
        self._stack.append((height, value))
        self.size += 1

    def frontier(self) -> Frontier:
        return Frontier(self.size, [value for _, value in self._stack])


class Extended(MerkleTree):
    """The tree of a frontier's old leaves (known by their peaks alone) and new leaves:
    ``root()``, and ``inclusion_proof(i)`` for a new leaf (``i >= old size``)."""

    def __init__(self, frontier: Frontier, new: list[bytes]) -> None:
        super().__init__([])
        self._frontier = frontier
        self._old = frontier.size
        self._new = new
        self._cache.update(frontier.peaks)

    @property
    def size(self) -> int:
        return self._old + len(self._new)

    def leaf(self, index: int) -> bytes:
        if index < self._old:
            raise ValueError(f"leaf {index} is before the frontier ({self._old})")
        return self._new[index - self._old]

    def root(self, size: int | None = None) -> bytes:
        if (self.size if size is None else size) == self._old:
            return self._frontier.root()
        return super().root(size)

    def _mth(self, lo: int, hi: int) -> bytes:
        found = self._cache.get((lo, hi))
        if found is not None:
            return found
        if hi - lo == 1 and lo >= self._old:
            return self._new[lo - self._old]
        if hi <= self._old:  # never asked for by a root or a new leaf's path (module doc)
            raise ValueError(f"the subtree [{lo}, {hi}) is inside the frontier, not a peak")
        k = split(hi - lo)
        found = node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))
        self._cache[(lo, hi)] = found
        return found

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        if index < self._old:
            raise ValueError(f"leaf {index} is before the frontier ({self._old})")
        return super().inclusion_proof(index, size)

    def frontier(self) -> Frontier:
        ranges = _peak_ranges(self.size)
        return Frontier(self.size, [self._mth(lo, hi) for lo, hi in ranges])
