"""Wait until Felix reports a new endpoint's routes (and policy) programmed.

Calico's plugin can hold ADD until the dataplane is ready, so no pod starts before
its policy is in place; Felix answers ``EndpointStatus.WaitReady`` on its unix socket.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class NotReady(Exception):
    """Felix did not confirm the endpoint in time, or could not be asked."""


def wait_ready(
    socket_path: str, orchestrator: str, workload: str, endpoint: str, timeout_s: float
) -> None:
    import grpc  # only when the config asks for the wait: grpc costs ~100 ms to import

    from proto import calc_pb2, felix_services_pb2, felix_services_pb2_grpc

    req = felix_services_pb2.EndpointReadyRequest(
        id=calc_pb2.WorkloadEndpointID(
            orchestrator_id=orchestrator, workload_id=workload, endpoint_id=endpoint
        ),
        timeout_ms=int(timeout_s * 1000),
    )
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        stub = felix_services_pb2_grpc.EndpointStatusStub(channel)
        try:
            reply = stub.WaitReady(req, timeout=timeout_s + 1.0, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise NotReady(
                f"asking Felix at {socket_path} failed: {exc.code().name} {exc.details()}"
            ) from None
    if not reply.ready:
        raise NotReady(f"Felix did not program the endpoint in {timeout_s:g}s: {reply.reason}")
    log.info("felix reports endpoint ready workload=%s endpoint=%s", workload, endpoint)
