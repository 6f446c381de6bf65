"""Who may ask for what: a PURE decision over kernel-supplied credentials.

The peer's uid/gid/pid/groups come from ``SO_PEERCRED``/``SO_PEERGROUPS``
(never from the message); the target's real and effective uid are sensed
by the caller.  The rules (issue 5):

* root (uid 0) and members of the configured admin group may act on any process;
* anyone else only on processes whose real, effective AND saved uid are the
  peer's and that are dumpable (not running a setuid or privileged program),
  and never with move-all (it would move pages shared with other processes);
* ``drain`` and ``reload`` are admin-only; ``status`` and ``plan`` are open to
  anyone who can connect (the socket's mode/group decide that);
* ``cancel`` is decided by the server: a request can be cancelled by the peer
  uid that started it, or by an admin.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Peer:
    """The process on the other end of a connection, as the kernel reports it."""

    uid: int
    gid: int
    pid: int
    groups: frozenset[int] = field(default_factory=frozenset)

    def describe(self) -> str:
        return f"uid={self.uid} pid={self.pid}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    admin: bool = False

    def __bool__(self) -> bool:
        return self.allowed


OPEN_OPS = frozenset({"status", "plan", "cancel"})
TARGETED_OPS = frozenset({"migrate", "query"})     # act on one process: ownership rule
ADMIN_ONLY_OPS = frozenset({"drain", "reload"})


def is_admin(peer: Peer, admin_gid: int | None) -> bool:
    """Root, or a member (primary or supplementary group) of the admin group."""
    if peer.uid == 0:
        return True
    return admin_gid is not None and (peer.gid == admin_gid or admin_gid in peer.groups)


def authorize(peer: Peer, op: str, *, target_uids: tuple[int, ...] | None = None,
              target_pid: int | None = None, move_all: bool = False,
              admin_gid: int | None = None, dumpable: bool = True) -> Decision:
    """Allow or deny ``op`` for ``peer``; ``target_uids`` = (real, effective[, saved]) uid
    of the target, read in one snapshot with ``dumpable``."""
    admin = is_admin(peer, admin_gid)
    who = "root" if peer.uid == 0 else ("admin group member" if admin else f"uid {peer.uid}")
    if op in OPEN_OPS:
        return Decision(True, f"{op} is open to every peer", admin)
    if op in ADMIN_ONLY_OPS:
        if admin:
            return Decision(True, f"{who} may {op}", admin)
        return Decision(False, f"{op} needs root or the admin group; uid {peer.uid} is neither", admin)
    if op not in TARGETED_OPS:
        return Decision(False, f"unknown operation {op!r}", admin)
    if admin:
        return Decision(True, f"{who} may {op} any process", admin)
    if move_all:
        return Decision(False, "move-all needs root or the admin group (it also moves pages other "
                               "processes share)", admin)
    target = f"process {target_pid}" if target_pid is not None else "the target process"
    if target_uids is None:
        return Decision(False, f"the owner of {target} is unknown", admin)
    names = ("real", "effective", "saved")
    other = next(((name, uid) for name, uid in zip(names, target_uids) if uid != peer.uid), None)
    if other is None:
        if not dumpable:
            return Decision(False, f"{target} is not dumpable (it runs a setuid or privileged "
                                   f"program); only root or the admin group may {op} it", admin)
        return Decision(True, f"uid {peer.uid} owns {target}", admin)
    whose = f"{other[0]} uid {other[1]}"
    return Decision(False, f"uid {peer.uid} may only {op} its own processes; {target} runs as "
                           f"{whose}", admin)
