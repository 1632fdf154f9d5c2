"""The KV cache's block pool with automatic prefix caching, as vLLM V1 keeps it
(vllm/v1/core/block_pool.py, kv_cache_manager.py, kv_cache_utils.py).

A block holds BLOCK_SIZE tokens. A full block of prompt tokens gets a hash chained from
its parent block's hash and its own token ids (kv_cache_utils.hash_block_tokens), and is
registered under that hash, so a later request whose prompt starts with the same tokens
reuses the block instead of recomputing it. Freed blocks go to the tail of one free queue
(in reverse order, so a request's last blocks are evicted first) but keep their hash until
they are handed out again: the queue's head is the least recently used block, and taking
it evicts its hash (LRU eviction of free cached blocks). A hit never covers the whole
prompt: the last token is always recomputed to get logits (get_computed_blocks).
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

from llmops_sim.timing import BLOCK_SIZE
_NONE_HASH = hashlib.sha256(b"llmops-sim-none-hash").digest()  # vLLM seeds the chain with NONE_HASH


def block_hashes(token_ids: Sequence[int], block_size: int = BLOCK_SIZE) -> list[bytes]:
    """Chained hashes of every full block of `token_ids` (the partial tail has none)."""
    hashes: list[bytes] = []
    parent = _NONE_HASH
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        block = array("I", (t & 0xFFFFFFFF for t in token_ids[start:start + block_size]))
        parent = hashlib.sha256(parent + block.tobytes()).digest()
        hashes.append(parent)
    return hashes


@dataclass
class _Block:
    block_id: int
    ref_count: int = 0
    block_hash: bytes | None = None


@dataclass
class CacheStats:
    """vLLM's PrefixCacheStats: queried and hit prompt tokens (vllm/v1/metrics/stats.py)."""

    requests: int = 0
    queries: int = 0
    hits: int = 0


@dataclass
class BlockPool:
    num_blocks: int
    enable_caching: bool = True
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self._blocks = [_Block(i) for i in range(self.num_blocks)]
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(self.num_blocks))
        self._cached: dict[bytes, int] = {}

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        return 1.0 - len(self._free) / self.num_blocks if self.num_blocks else 0.0

    def cached_prefix(self, hashes: Sequence[bytes], prompt_tokens: int) -> list[int]:
        """Block ids of the longest cached prefix, at most prompt_tokens - 1 tokens long;
        counts the query and the hit (vLLM counts each get_computed_blocks call)."""
        found: list[int] = []
        if self.enable_caching:
            limit = (prompt_tokens - 1) // BLOCK_SIZE
            for block_hash in hashes[:limit]:
                block_id = self._cached.get(block_hash)
                if block_id is None:
                    break
                found.append(block_id)
            self.stats.requests += 1
            self.stats.queries += prompt_tokens
            self.stats.hits += len(found) * BLOCK_SIZE
        return found

    def evictable_among(self, block_ids: Sequence[int]) -> int:
        """How many of these (hit) blocks sit in the free queue: touching them uses up free blocks."""
        return sum(1 for b in block_ids if self._blocks[b].ref_count == 0)

    def touch(self, block_ids: Sequence[int]) -> None:
        for block_id in block_ids:
            block = self._blocks[block_id]
            if block.ref_count == 0:
                del self._free[block_id]
            block.ref_count += 1

    def allocate(self, count: int) -> list[int]:
        """`count` blocks from the head of the free queue, evicting their cached hashes."""
        if count > len(self._free):
            raise ValueError(f"cannot allocate {count} blocks, {len(self._free)} free")
        taken: list[int] = []
        for _ in range(count):
            block_id, _ = self._free.popitem(last=False)
            block = self._blocks[block_id]
            if block.block_hash is not None:
                if self._cached.get(block.block_hash) == block_id:
                    del self._cached[block.block_hash]
                block.block_hash = None
            block.ref_count = 1
            taken.append(block_id)
        return taken

    def cache_full_blocks(self, block_ids: Sequence[int], hashes: Sequence[bytes], computed_tokens: int) -> None:
        """Register the request's blocks that are now full of computed prompt tokens."""
        if not self.enable_caching:
            return
        full = min(computed_tokens // BLOCK_SIZE, len(hashes), len(block_ids))
        for index in range(full):
            block = self._blocks[block_ids[index]]
            if block.block_hash is None:
                block.block_hash = hashes[index]
                # A second copy of the same content stays uncached (vLLM keeps the first).
                self._cached.setdefault(hashes[index], block.block_id)

    def free(self, block_ids: Sequence[int]) -> None:
        """Release a request's blocks; the last ones go to the free queue first (evicted first)."""
        for block_id in reversed(block_ids):
            block = self._blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self._free[block_id] = None

    def reset_cache(self) -> None:
        self._cached.clear()
        for block in self._blocks:
            block.block_hash = None
