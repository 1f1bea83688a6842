"""CrossModel router."""

from crossmodel_common import grpc_env

# Before anything of the service imports grpc (crossmodel_common.grpc_env says why).
grpc_env.apply()
