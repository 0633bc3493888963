"""The gRPC bootstrap: server with health/reflection/TLS, and the domain-error interceptor."""

from edgegate_common.rpc.interceptor import STATUS_FOR_CODE, ServiceInterceptor, status_code
from edgegate_common.rpc.metadata import authorization, metadata
from edgegate_common.rpc.server import GrpcServer
from edgegate_common.rpc.status import error_details

__all__ = [
    "STATUS_FOR_CODE",
    "GrpcServer",
    "ServiceInterceptor",
    "authorization",
    "error_details",
    "metadata",
    "status_code",
]
