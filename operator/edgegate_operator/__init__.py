"""edgegate operator (kopf): ModelDeployment canary rollouts and TenantQuota.

The handlers arrive with the operator's own issue; this package exists so the
operator's distribution, image and import contracts are in place from the start.
"""

__version__ = "0.1.0"
