"""NetworkPolicy semantics, enough to ask "may A reach B on port P?" of rendered policies.

What the API server's NetworkPolicy spec says, for the fields the chart uses: a pod that no
policy of a direction selects is open in that direction; a selected pod takes only traffic
that some rule of that direction allows. A rule allows when its ports match (none listed:
every port) and one of its peers matches (none listed: every source or destination). A
podSelector peer without a namespaceSelector means the policy's own namespace; an ipBlock
matches addresses outside the cluster's pods (the chart's ipBlocks are API servers and
the internet). Traffic passes when the source's egress and the destination's ingress
both allow it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels) or, with `ip` and no namespace, an address outside."""

    name: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = "10.0.0.99"


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector: matchLabels and matchExpressions."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


class Network:
    """Rendered NetworkPolicies plus the labels of the namespaces involved."""

    def __init__(
        self, policies: Sequence[Obj], *, namespaces: Mapping[str, Mapping[str, str]]
    ) -> None:
        self.policies = policies
        self.namespaces = namespaces

    def allows(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        egress_ok = self._direction_allows("Egress", src, dst, port, protocol)
        ingress_ok = self._direction_allows("Ingress", dst, src, port, protocol)
        return egress_ok and ingress_ok

    def _direction_allows(
        self, direction: str, subject: Endpoint, peer: Endpoint, port: int, protocol: str
    ) -> bool:
        if subject.namespace is None:  # outside the cluster: no policy applies there
            return True
        selecting = [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == subject.namespace
            and direction in p["spec"].get("policyTypes", ["Ingress"])
            and selects(p["spec"]["podSelector"], subject.labels)
        ]
        if not selecting:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        return any(
            self._rule_allows(
                rule, peers_key, policy["metadata"]["namespace"], peer, port, protocol
            )
            for policy in selecting
            for rule in policy["spec"].get(key, [])
        )

    def _rule_allows(
        self, rule: Obj, peers_key: str, namespace: str, peer: Endpoint, port: int, protocol: str
    ) -> bool:
        ports = rule.get("ports")
        if ports and not any(
            p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports
        ):
            return False
        peers = rule.get(peers_key)
        return not peers or any(self._peer_matches(p, namespace, peer) for p in peers)

    def _peer_matches(self, selector: Obj, namespace: str, peer: Endpoint) -> bool:
        if "ipBlock" in selector:
            if peer.namespace is not None:
                return False
            block = selector["ipBlock"]
            address = ipaddress.ip_address(peer.ip)
            inside = address in ipaddress.ip_network(block["cidr"])
            return inside and not any(
                address in ipaddress.ip_network(c) for c in block.get("except", [])
            )
        if peer.namespace is None:
            return False
        if "namespaceSelector" in selector:
            ns_labels = self.namespaces.get(peer.namespace, {})
            if not selects(selector["namespaceSelector"], ns_labels):
                return False
        elif peer.namespace != namespace:
            return False
        return selects(selector.get("podSelector", {}), peer.labels)
