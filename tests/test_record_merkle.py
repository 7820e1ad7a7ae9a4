"""The record's Merkle log against RFC 9162 §2.1: the RFC 6962/9162 test tree's vectors (as
Go's transparency-dev/merkle tests them), then every proof of every tree up to 40 leaves."""

from __future__ import annotations

import hashlib

import pytest

from treatyflow.agency.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

# The 8-leaf test tree of RFC 6962's reference code, with its roots for sizes 1-8 and
# proofs: the vectors of transparency-dev/merkle proof/verify_test.go (leaf numbers there
# are 1-based; here they are indexes).
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
# The inner nodes those proofs are made of (the roots of sizes 1, 2 and 4 are among them).
NODES = {name: bytes.fromhex(h) for name, h in {
    "96a2": "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f08": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47": "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    "bc1a": "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca85": "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "0ebc": "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "b086": "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
}.items()} | {"root1": ROOTS[0], "root2": ROOTS[1], "root4": ROOTS[3]}
# (index, tree size, proof) and (first size, second size, proof), the proofs by node name.
INCLUSION = [(0, 1, ""), (0, 8, "96a2 5f08 6b47"), (5, 8, "bc1a ca85 root4"),
             (2, 3, "root2"), (1, 5, "root1 5f08 bc1a")]
CONSISTENCY = [(1, 1, ""), (1, 8, "96a2 5f08 6b47"), (6, 8, "0ebc ca85 root4"),
               (2, 5, "5f08 bc1a"), (6, 7, "0ebc b086 root4")]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
TREE = MerkleTree.of_leaves(LEAVES)


def _hexes(proof: str) -> list[bytes]:
    return [NODES[name] for name in proof.split()]


def test_the_hashes_are_the_rfcs_with_their_domain_prefixes() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest() == ROOTS[0]
    assert node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32
                                                            ).digest()
    assert MerkleTree([]).root() == EMPTY_ROOT


def test_the_roots_of_the_rfc_test_tree_for_every_size() -> None:
    assert [TREE.root(n) for n in range(1, 9)] == ROOTS


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_are_the_vectors_and_verify(index: int, size: int,
                                                     proof: str) -> None:
    assert TREE.inclusion_proof(index, size) == _hexes(proof)
    verify_inclusion(index, size, TREE.leaf(index), _hexes(proof), ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_consistency_proofs_are_the_vectors_and_verify(first: int, second: int,
                                                       proof: str) -> None:
    assert TREE.consistency_proof(first, second) == _hexes(proof)
    verify_consistency(first, second, _hexes(proof), ROOTS[first - 1], ROOTS[second - 1])


def _flipped(proof: list[bytes], at: int, bit: int) -> list[bytes]:
    changed = list(proof)
    changed[at] = bytes([changed[at][0] ^ bit]) + changed[at][1:]
    return changed


@pytest.mark.parametrize(("index", "size", "proof"), [v for v in INCLUSION if v[2]])
def test_a_corrupted_inclusion_proof_never_verifies(index: int, size: int,
                                                    proof: str) -> None:
    path, root, leaf = _hexes(proof), ROOTS[size - 1], TREE.leaf(index)
    probes = [(index - 1, size, leaf, path, root), (index + 1, size, leaf, path, root),
              (index ^ 2, size, leaf, path, root), (index, size * 2, leaf, path, root),
              (index, size // 2, leaf, path, root), (index, size, SOME_HASH, path, root),
              (index, size, leaf, path, EMPTY_ROOT), (index, size, leaf, path, SOME_HASH),
              (index, size, leaf, [*path, root], root), (index, size, leaf, [root, *path], root),
              (index, size, leaf, path[:-1], root),
              *[(index, size, leaf, _flipped(path, at, 8), root) for at in range(len(path))]]
    for probe in probes:
        with pytest.raises(ProofError):
            verify_inclusion(*probe)


@pytest.mark.parametrize(("first", "second", "proof"), [v for v in CONSISTENCY if v[2]])
def test_a_corrupted_consistency_proof_never_verifies(first: int, second: int,
                                                      proof: str) -> None:
    path, r1, r2 = _hexes(proof), ROOTS[first - 1], ROOTS[second - 1]
    probes = [(first - 1, second, path, r1, r2), (first + 1, second, path, r1, r2),
              (first ^ 2, second, path, r1, r2), (first, second * 2, path, r1, r2),
              (first, second // 2, path, r1, r2), (first, second, path, SOME_HASH, r2),
              (first, second, path, r1, SOME_HASH), (first, second, path, r2, r1),
              (first, second, [], r1, r2), (first, second, [*path, r1], r1, r2),
              (first, second, [*path, r2], r1, r2), (first, second, [r1, *path], r1, r2),
              (first, second, [r2, *path], r1, r2), (first, second, [path[0], *path], r1, r2),
              (first, second, path[:-1], r1, r2),
              *[(first, second, _flipped(path, at, 16), r1, r2) for at in range(len(path))]]
    for probe in probes:
        with pytest.raises(ProofError):
            verify_consistency(*probe)


def test_the_edge_sizes_of_consistency_as_go_has_them() -> None:
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, ROOTS[4])
    verify_consistency(3, 3, [], ROOTS[2], ROOTS[2])
    for probe in [(1, 1, [], ROOTS[0], ROOTS[1]), (2, 1, [], ROOTS[1], ROOTS[0]),
                  (1, 2, [], ROOTS[0], ROOTS[1]), (0, 1, [EMPTY_ROOT], EMPTY_ROOT, ROOTS[0]),
                  (1, 1, [EMPTY_ROOT], ROOTS[0], ROOTS[0])]:
        with pytest.raises(ProofError):
            verify_consistency(*probe)
    with pytest.raises(ProofError):
        root_from_inclusion(0, 0, ROOTS[0], [])


# --- every tree up to 40 leaves, against the RFC's definitions written out plainly ------


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    if m == len(leaves):
        return [] if whole else [_mth(leaves)]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


BIG = [f"leaf {i}".encode() for i in range(40)]
BIG_TREE = MerkleTree.of_leaves(BIG)


@pytest.mark.parametrize("size", range(1, 41))
def test_every_inclusion_proof_up_to_40_leaves(size: int) -> None:
    root = _mth(BIG[:size])
    assert BIG_TREE.root(size) == root
    for index in range(size):
        proof = BIG_TREE.inclusion_proof(index, size)
        assert proof == _path(index, BIG[:size])
        verify_inclusion(index, size, leaf_hash(BIG[index]), proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf_hash(b"another leaf"), proof, root)


@pytest.mark.parametrize("second", range(1, 41))
def test_every_consistency_proof_up_to_40_leaves(second: int) -> None:
    for first in range(1, second + 1):
        proof = BIG_TREE.consistency_proof(first, second)
        assert proof == ([] if first == second else _subproof(first, BIG[:second], True))
        verify_consistency(first, second, proof, BIG_TREE.root(first), BIG_TREE.root(second))
        rewritten = MerkleTree.of_leaves([b"rewritten", *BIG[1:second]])
        if first < second:
            with pytest.raises(ProofError, match="does not lead to the root"):
                verify_consistency(first, second, rewritten.consistency_proof(first),
                                   BIG_TREE.root(first), rewritten.root())
