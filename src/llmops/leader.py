"""Opt-in high availability: Lease-based leader election, as client-go's `leaderelection`.

Why a Lease and not Kopf's peering: Kopf pauses *every* operator that sees a peer of the same
priority (kopf/_core/engines/peering.py: "Pausing all operators, including self"), so
replicas of one Deployment would need distinct priorities; its records live 60 s by default;
it needs its own KopfPeering CRD; and a paused Kopf still runs our work queue's drift
re-queues and workers. A Lease gates the whole process instead: a standby runs no watches and
no handlers at all until it holds the Lease, and a leader that cannot renew in time exits.

Timing (client-go's defaults scaled down): lease 8 s, renew and retry every 2 s, give up when
a renewal has not succeeded for 5 s. A standby sees a renewal at most one retry late and
waits one lease from then, so it takes over at most 2 + 8 + 2 = 12 s after a leader dies
(under 15 s); a leader that lost contact stops acting 5 s after its last renewal, before
anyone else may take over.

Expiry is judged as client-go does, from the local clock of the observer: when the record
last changed as seen here, never from the remote renewTime (clocks of two nodes differ).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

LEASE_SECONDS = 8.0
RENEW_SECONDS = 2.0
RENEW_DEADLINE_SECONDS = 5.0


@dataclass(frozen=True)
class LeaseRecord:
    holder: Optional[str]
    renew_time: Optional[str]      # as stored (RFC 3339 MicroTime); compared only for change
    duration: float
    transitions: int
    resource_version: Optional[str] = None


def decide(record: Optional[LeaseRecord], observed_at: float, now: float, me: str) -> str:
    """PURE: 'create' (no Lease yet), 'renew' (ours), 'acquire' (free or expired), 'wait'."""
    if record is None:
        return "create"
    if record.holder == me:
        return "renew"
    if not record.holder or now - observed_at > record.duration:
        return "acquire"
    return "wait"


class LeaderElector:
    """One candidate. `kube` provides read_lease/write_lease (kube.py)."""

    def __init__(self, kube, namespace: str, name: str, identity: str,
                 lease_seconds: float = LEASE_SECONDS, renew_seconds: float = RENEW_SECONDS,
                 renew_deadline: float = RENEW_DEADLINE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_seconds, self.renew_seconds, self.renew_deadline = lease_seconds, renew_seconds, renew_deadline
        self.clock = clock
        self._seen: Optional[tuple] = None  # (holder, renewTime) last observed
        self._observed_at = 0.0
        self.last_renewed = 0.0
        self.holder: Optional[str] = None
        self.stop_renewing = threading.Event()

    def try_once(self) -> bool:
        """Read the Lease, then take or renew it if `decide` says so. True while we hold it."""
        record = self.kube.read_lease(self.namespace, self.name)
        now = self.clock()
        if record is not None and (record.holder, record.renew_time) != self._seen:
            self._seen, self._observed_at = (record.holder, record.renew_time), now
        self.holder = record.holder if record else None
        action = decide(record, self._observed_at, now, self.identity)
        if action == "wait":
            return False
        transitions = (record.transitions if record else 0) + (action in ("acquire",))
        ok = self.kube.write_lease(self.namespace, self.name, self.identity, self.lease_seconds, transitions,
                                   record.resource_version if record else None)
        if ok:
            self.last_renewed, self.holder = now, self.identity
            if action != "renew":
                log.info("acquired the leader lease %s/%s as %s", self.namespace, self.name, self.identity)
        return ok

    def wait_until_leader(self, stop: Optional[threading.Event] = None) -> bool:
        announced = None
        while not (stop and stop.is_set()):
            try:
                if self.try_once():
                    return True
            except Exception as exc:  # noqa: BLE001 - the API server may be briefly away
                log.warning("leader election: %s", exc)
            if self.holder != announced:
                log.info("standing by: the lease %s/%s is held by %s", self.namespace, self.name, self.holder)
                announced = self.holder
            time.sleep(self.renew_seconds)
        return False

    def keep_renewing(self, on_lost: Callable[[], None], stop: Optional[threading.Event] = None) -> threading.Thread:
        """Renew in a thread; call `on_lost` once a renewal has failed for renew_deadline."""
        stop = stop or self.stop_renewing

        def run() -> None:
            while not stop.wait(self.renew_seconds):
                try:
                    if self.try_once():
                        continue
                    log.error("leader lease %s/%s taken by %s", self.namespace, self.name, self.holder)
                    on_lost()
                    return
                except Exception as exc:  # noqa: BLE001
                    log.warning("leader lease renewal failed: %s", exc)
                if self.clock() - self.last_renewed > self.renew_deadline:
                    log.error("could not renew the leader lease for %gs", self.renew_deadline)
                    on_lost()
                    return

        thread = threading.Thread(target=run, name="leader-renew", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up (on a clean shutdown), so a standby takes over at once."""
        self.stop_renewing.set()
        record = self.kube.read_lease(self.namespace, self.name)
        if record is not None and record.holder == self.identity:
            self.kube.write_lease(self.namespace, self.name, "", 1, record.transitions, record.resource_version)
