"""The gRPC bootstrap: server with health/reflection/TLS, and the domain-error interceptor."""

from edgegate_common.rpc.interceptor import STATUS_FOR_CODE, ServiceInterceptor, status_code
from edgegate_common.rpc.server import GrpcServer

__all__ = ["STATUS_FOR_CODE", "GrpcServer", "ServiceInterceptor", "status_code"]
