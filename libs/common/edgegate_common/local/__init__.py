"""Local mode: a real nats-server and the services as processes on one machine."""

from edgegate_common.local.nats_server import LocalNatsServer, find_nats_server
from edgegate_common.local.ports import free_port, port_is_free, wait_for_port
from edgegate_common.local.processes import ServiceProcess
from edgegate_common.rpc.probe import health_status

__all__ = [
    "LocalNatsServer",
    "ServiceProcess",
    "find_nats_server",
    "free_port",
    "health_status",
    "port_is_free",
    "wait_for_port",
]
