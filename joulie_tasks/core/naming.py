"""NodePowerProfile object names for nodes (docs/SPEC.md §7).

A node's profile object is ``node-<sanitised name>``. Sanitising loses information
(``gpu.a`` and ``gpu-a`` both become ``gpu-a``), so names are assigned over *every*
node of the cluster at once, eligible or not, and collisions are broken
deterministically, independent of input order:

- a node whose name already is its sanitised form keeps the plain name;
- every other member of a colliding group gets ``-<first 10 hex of sha256(name)>``;
- a name over 253 characters is truncated and gets the hash suffix;
- a name that sanitises to nothing becomes ``node-<hash>``.

Should a hashed name still clash with another node's name (practically impossible,
but cheap to rule out), the hash is lengthened until every name is unique.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

from joulie_tasks.core import models

PREFIX = "node-"
#: Longest DNS-1123 subdomain, the limit for a cluster-scoped object's name.
MAX_NAME_LENGTH = 253
_SHORT_HASH = 10
_HASH_STEP = 6
_INVALID = re.compile(r"[^a-z0-9-]")


def sanitise_node_name(name: str) -> str:
    """Lower-case ``name``, turn every character outside ``[a-z0-9-]`` into ``-``,
    and strip leading and trailing ``-``. The result may be empty."""
    return _INVALID.sub("-", name.lower()).strip("-")


def assign_npp_names(node_names: Iterable[str]) -> dict[models.NodeName, models.NppName]:
    """Map every node name (duplicates ignored) to a distinct, valid profile-object name.

    Pass all node names in the cluster, not only the eligible ones, so that an
    ineligible node's object name is never handed to another node.
    """
    names = set(node_names)
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[sanitise_node_name(name)].append(name)
    # hash_len[name] == 0 means "plain name"; plain names are unique by construction
    # because a plain name is only given to the sole owner of its sanitised form.
    hash_len = {
        name: 0 if _keeps_plain(name, sanitised, len(groups[sanitised])) else _SHORT_HASH
        for sanitised, members in groups.items()
        for name in members
    }
    while True:
        assigned = {name: _render(name, hash_len[name]) for name in names}
        claimants: dict[str, list[str]] = defaultdict(list)
        for name, npp in assigned.items():
            claimants[npp].append(name)
        clashes = [c for c in claimants.values() if len(c) > 1]
        if not clashes:
            return {models.NodeName(n): models.NppName(npp) for n, npp in assigned.items()}
        for clash in clashes:
            for name in clash:
                if hash_len[name]:
                    hash_len[name] += _HASH_STEP


def _keeps_plain(name: str, sanitised: str, group_size: int) -> bool:
    if not sanitised or len(PREFIX) + len(sanitised) > MAX_NAME_LENGTH:
        return False
    return group_size == 1 or name == sanitised


def _render(name: str, hash_len: int) -> str:
    sanitised = sanitise_node_name(name)
    if not hash_len:
        return PREFIX + sanitised
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    # Past 64 hex digits two names would share a sha256; repeat the digest of the
    # digest rather than loop forever (unreachable in practice).
    while len(digest) < hash_len:
        digest += hashlib.sha256(digest.encode()).hexdigest()
    suffix = digest[: min(hash_len, MAX_NAME_LENGTH - len(PREFIX))]
    room = MAX_NAME_LENGTH - len(PREFIX) - len(suffix) - 1
    stem = sanitised[: max(room, 0)].rstrip("-")
    return f"{PREFIX}{stem}-{suffix}" if stem else PREFIX + suffix
