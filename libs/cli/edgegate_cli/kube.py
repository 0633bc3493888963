"""ModelDeployment resources over the Kubernetes API, for the SRE commands.

The commands read a resource and write JSON merge patches to it, nothing
else, so that whatever they do a plain `kubectl patch --type merge` does too,
and the operator stays the only thing that acts on a rollout. Configuration is
found as kubectl finds it: `--kubeconfig`, else `KUBECONFIG` (read when the
command runs, not when the client library was imported), else
`~/.kube/config`, else the pod's service account when running in a cluster.

Every failure becomes a `KubeError` whose text is one line for a person: which
resource, which namespace, what the API server said.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config

GROUP = "edgegate.io"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
MERGE_PATCH = "application/merge-patch+json"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 15.0


class KubeError(Exception):
    """What went wrong, in one line; `lasting` is False for a blip worth retrying."""

    def __init__(self, message: str, *, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting


class Conflict(KubeError):
    """409: the resource changed between a read and a write that named its resourceVersion."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the commands go: an API server (and credentials) and a namespace."""

    configuration: client.Configuration
    namespace: str


def target(*, kubeconfig: str | None, context: str | None, namespace: str | None) -> Target:
    """Load the configuration kubectl would use; the namespace defaults as kubectl's does."""
    paths = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    found = [p for p in paths.split(os.pathsep) if p and Path(p).expanduser().exists()]
    if kubeconfig is not None and not found:
        raise KubeError(f"kubeconfig {kubeconfig} does not exist")
    if not found and os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
        return _in_cluster(namespace)
    if not found:
        raise KubeError(
            "no Kubernetes configuration: set KUBECONFIG, pass --kubeconfig, "
            "or run inside a cluster"
        )
    configuration = client.Configuration()
    # kubernetes.config and ApiClient.close are not annotated, hence the ignores below.
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=paths,
            context=context,
            client_configuration=configuration,
            persist_config=False,  # never rewrite the user's kubeconfig (token refreshes)
        )
        contexts, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=paths
        )
    except (config.ConfigException, OSError, ValueError) as exc:
        raise KubeError(f"kubeconfig {paths}: {exc}") from None
    wanted = context or (current or {}).get("name")
    chosen = next((c for c in contexts if c.get("name") == wanted), current) or {}
    default = (chosen.get("context") or {}).get("namespace") or "default"
    return _target(configuration, namespace or default)


def _in_cluster(namespace: str | None) -> Target:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except config.ConfigException as exc:
        raise KubeError(f"in-cluster configuration: {exc}") from None
    if namespace is None:
        try:
            namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        except OSError:
            namespace = "default"
    return _target(configuration, namespace)


def _target(configuration: client.Configuration, namespace: str) -> Target:
    # No retries inside urllib3: each would log a warning line, and the commands that
    # wait (--watch, a command's acknowledgement) read again by themselves.
    configuration.retries = 0
    return Target(configuration=configuration, namespace=namespace)


class ModelDeployments:
    """Get and merge-patch ModelDeployments in one namespace."""

    def __init__(self, where: Target) -> None:
        self.namespace = where.namespace
        self.server = str(where.configuration.host)
        self._client = client.ApiClient(where.configuration)
        self._api = client.CustomObjectsApi(self._client)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def get(self, name: str) -> dict[str, Any]:
        with self._answers(name, "get"):
            found = self._api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name,
                _request_timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )  # fmt: skip
        return _object(found)

    def patch(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (null removes a field, a list replaces the list)."""
        with self._answers(name, "patch"):
            patched = self._api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, dict(body),
                _content_type=MERGE_PATCH,
                _request_timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )  # fmt: skip
        return _object(patched)

    @contextmanager
    def _answers(self, name: str, verb: str) -> Iterator[None]:
        """API and connection failures as one line that names the resource and namespace."""
        try:
            yield
        except client.ApiException as exc:
            raise _api_error(exc, name=name, namespace=self.namespace, verb=verb) from None
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(
                f"cannot reach the Kubernetes API at {self.server}: {_reason(exc)}", lasting=False
            ) from None


def _api_error(exc: client.ApiException, *, name: str, namespace: str, verb: str) -> KubeError:
    status = int(exc.status or 0)
    message = _server_message(exc)
    resource = f'modeldeployment "{name}" in namespace "{namespace}"'
    if status == 404 and "could not find the requested resource" in message:
        return KubeError(
            f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}: "
            "install edgegate's CRDs (deploy/helm/edgegate/crds)"
        )
    if status == 404:
        return KubeError(f'modeldeployment "{name}" not found in namespace "{namespace}"')
    if status == 401:
        return KubeError("unauthorized: the API server refused the kubeconfig's credentials")
    if status == 403:
        return KubeError(
            f"forbidden: may not {verb} {resource} "
            f"(needs RBAC get and patch on {PLURAL}.{GROUP}): {message}"
        )
    if status == 409:
        return Conflict(f"{resource} changed while this command wrote it: {message}")
    if status == 422:
        return KubeError(f"the API server refused the change to {resource}: {message}")
    if status == 0:  # the client could not read the answer (not JSON: a proxy's error page?)
        return KubeError(
            f"{verb} {resource}: the API server's answer is unreadable ({exc.reason})",
            lasting=False,
        )
    lasting = status not in (429, 500, 502, 503, 504)
    return KubeError(f"{verb} {resource}: {status} {exc.reason}: {message}", lasting=lasting)


def _server_message(exc: client.ApiException) -> str:
    """The `message` of the API server's Status body, else the HTTP reason."""
    try:
        doc = json.loads(exc.body or "")
    except ValueError:
        doc = None
    text = doc.get("message") if isinstance(doc, dict) else None
    return str(text) if text else str(exc.reason or "no message")


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner or exc).splitlines()[0]


def _object(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise KubeError(f"the API server answered {type(raw).__name__}, not an object")
    return raw
