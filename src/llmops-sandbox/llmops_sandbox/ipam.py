"""Pod IP allocation from the sandbox pod range (pure, in memory)."""

from __future__ import annotations

import ipaddress


class PoolExhausted(RuntimeError):
    pass


class IpAllocator:
    """Hands out distinct host addresses of `cidr`, never the gateway; lowest free first."""

    def __init__(self, cidr: str, gateway: str):
        self.network = ipaddress.ip_network(cidr)
        self.gateway = ipaddress.ip_address(gateway)
        if self.gateway not in self.network:
            raise ValueError(f"gateway {gateway} is not inside {cidr}")
        self._by_key: dict[str, ipaddress.IPv4Address] = {}
        self._used: set[ipaddress.IPv4Address] = {self.gateway}
        self._next = int(self.network.network_address) + 1

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def allocate(self, key: str) -> str:
        if key in self._by_key:
            return str(self._by_key[key])
        first = int(self.network.network_address) + 1
        last = int(self.network.broadcast_address) - 1
        size = last - first + 1
        # Round-robin from the last allocation so a just-freed IP is not reused at once
        # (stale Endpoints would otherwise point at the wrong pod).
        for offset in range(size):
            candidate = ipaddress.ip_address(first + (self._next - first + offset) % size)
            if candidate not in self._used:
                self._used.add(candidate)
                self._by_key[key] = candidate
                self._next = int(candidate) + 1
                return str(candidate)
        raise PoolExhausted(f"no free pod IP left in {self.network}")

    def release(self, key: str) -> None:
        ip = self._by_key.pop(key, None)
        if ip is not None:
            self._used.discard(ip)

    def reserve(self, key: str, ip: str) -> None:
        addr = ipaddress.ip_address(ip)
        self._by_key[key] = addr
        self._used.add(addr)

    def in_use(self) -> dict[str, str]:
        return {k: str(v) for k, v in self._by_key.items()}
