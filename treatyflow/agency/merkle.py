"""The record's Merkle tree as RFC 9162 §2.1 builds it: hashes, inclusion and consistency proofs.

Leaf hash SHA-256(0x00 || leaf), node hash SHA-256(0x01 || left || right), the tree
split at the largest power of two smaller than its size (§2.1.1). ``inclusion_proof``
is §2.1.3.1's PATH, ``consistency_proof`` §2.1.4.1's PROOF; ``verify_inclusion`` and
``verify_consistency`` are §2.1.3.2 and §2.1.4.2 step by step, so a verifier in another
language can be checked against them line by line (docs/reference/evidence.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) of §2.1.1


class ProofError(ValueError):
    """A proof that does not verify; the message says at which check."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """k: the largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """The tree over a list of leaf hashes; subtree hashes are kept once computed, so the
    proofs of one export cost one pass over the leaves."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._leaves = list(leaf_hashes)
        self._cache: dict[tuple[int, int], bytes] = {}

    @classmethod
    def of_leaves(cls, leaves: Sequence[bytes]) -> MerkleTree:
        return cls([leaf_hash(leaf) for leaf in leaves])

    @property
    def size(self) -> int:
        return len(self._leaves)

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append leaves (an append-only log grows): every subtree hash kept stays true."""
        self._leaves.extend(leaf_hashes)

    def leaf(self, index: int) -> bytes:
        return self._leaves[index]

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]) (the whole tree by default)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {n}")
        return EMPTY_ROOT if n == 0 else self._mth(0, n)

    def _mth(self, lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return self._leaves[lo]
        found = self._cache.get((lo, hi))
        if found is None:
            k = split(hi - lo)
            found = node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))
            self._cache[(lo, hi)] = found
        return found

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of §2.1.3.1, from the leaf's sibling up to the root's."""
        n = self.size if size is None else size
        if not 0 <= index < n <= self.size:
            raise ValueError(f"no leaf {index} in a tree of {n}")
        return self._path(index, 0, n)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        if hi - lo == 1:
            return []
        k = split(hi - lo)
        if m < k:
            return [*self._path(m, lo, lo + k), self._mth(lo + k, hi)]
        return [*self._path(m - k, lo + k, hi), self._mth(lo, lo + k)]

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[0:second]) of §2.1.4.1: empty when ``first`` is 0 or equals
        ``second`` (nothing to prove)."""
        n = self.size if second is None else second
        if not 0 <= first <= n <= self.size:
            raise ValueError(f"no consistency proof from {first} to {n} in a tree of "
                             f"{self.size}")
        if first in (0, n):
            return []
        return self._subproof(first, 0, n, True)

    def _subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if whole else [self._mth(lo, hi)]
        k = split(hi - lo)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, whole), self._mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self._mth(lo, lo + k)]


def _hashes(proof: Sequence[bytes], what: str) -> None:
    for at, value in enumerate(proof):
        if len(value) != HASH_BYTES:
            raise ProofError(f"{what}[{at}] is {len(value)} bytes, not {HASH_BYTES}")


def _sides(fn: int, sn: int, count: int, what: str) -> list[bool]:
    """The walk both verifications share (§2.1.3.2 step 4, §2.1.4.2 step 6): for each of
    ``count`` proof hashes, whether it is the left sibling (``fn`` odd, or ``fn == sn``),
    from the node numbers ``fn`` and ``sn`` that each step shifts right; the proof must
    leave ``sn`` at 0 exactly at its end."""
    sides = []
    for _ in range(count):
        if sn == 0:
            raise ProofError(f"the {what} proof is longer than the tree is high")
        left = bool(fn & 1) or fn == sn
        sides.append(left)
        while left and fn and not fn & 1:
            fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"the {what} proof is shorter than the tree is high")
    return sides


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from the leaf hash at ``index`` (§2.1.3.2 steps 1-4)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not below the tree size {size}")
    _hashes([leaf, *proof], "inclusion hash")
    r = leaf
    for p, left in zip(proof, _sides(index, size - 1, len(proof), "inclusion"), strict=True):
        r = node_hash(p, r) if left else node_hash(r, p)
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> None:
    """§2.1.3.2: raises ProofError unless the leaf hash at ``index`` is in the tree of
    ``size`` leaves whose root is ``root``."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError(f"the inclusion proof of leaf {index} leads to another root than "
                         f"the tree of {size}'s")


def verify_consistency(first: int, second: int, proof: Sequence[bytes], first_root: bytes,
                       second_root: bytes) -> None:
    """§2.1.4.2: raises ProofError unless the tree of ``first`` leaves (``first_root``) is
    a prefix of the tree of ``second`` (``second_root``). Sizes 0 and equal sizes need
    an empty proof (and, equal, the same root), as Go's transparency-dev/merkle has it."""
    _hashes([first_root, second_root, *proof], "consistency hash")
    if not 0 <= first <= second:
        raise ProofError(f"size {first} is later than size {second}")
    if first == second or first == 0:
        if proof:
            raise ProofError(f"a proof from {first} to {second} must be empty")
        if first == second and first_root != second_root:
            raise ProofError(f"two different roots for the same size {first}")
        return
    if not proof:
        raise ProofError(f"the consistency proof from {first} to {second} is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the first root is a node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c, left in zip(path[1:], _sides(fn, sn, len(path) - 1, "consistency"), strict=True):
        if left:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    if fr != first_root:
        raise ProofError(f"the consistency proof does not lead to the root of size {first}: "
                         "the log was rewritten before that size")
    if sr != second_root:
        raise ProofError(f"the consistency proof does not lead to the root of size {second}: "
                         f"that tree does not extend the one of size {first}")
