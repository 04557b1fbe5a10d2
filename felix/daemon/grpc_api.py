"""Felix's gRPC services on its unix socket (proto/felix_services.proto)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent import futures

import grpc

from felix.calc import messages
from felix.daemon.core import FelixCore
from felix.daemon.hub import Overflow
from proto import calc_pb2, felix_services_pb2, felix_services_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_WAIT_MS = 30_000
MAX_WAIT_MS = 300_000


class CalcGraphService(felix_services_pb2_grpc.CalcGraphServicer):
    def __init__(self, core: FelixCore, poll: float = 0.5) -> None:
        self._core = core
        self._poll = poll

    def Subscribe(
        self, request: felix_services_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[calc_pb2.ToDataplane]:
        name = request.subscriber or context.peer()
        sub = self._core.subscribe(name)
        try:
            while context.is_active():
                try:
                    msg = sub.get(self._poll)
                except Overflow as exc:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{exc}; resubscribe")
                if msg is not None:
                    yield msg
        finally:
            self._core.unsubscribe(sub)


class LearnedRoutesService(felix_services_pb2_grpc.LearnedRoutesServicer):
    def __init__(self, core: FelixCore) -> None:
        self._core = core

    def Push(
        self,
        request_iterator: Iterator[felix_services_pb2.LearnedRouteMessage],
        context: grpc.ServicerContext,
    ) -> felix_services_pb2.PushReply:
        log.info("learned-routes stream opened peer=%s", context.peer())
        self._core.learned_reset()
        count = 0
        for msg in request_iterator:
            self._core.learned(msg)
            count += 1
        log.info("learned-routes stream closed peer=%s messages=%d", context.peer(), count)
        return felix_services_pb2.PushReply()


class EndpointStatusService(felix_services_pb2_grpc.EndpointStatusServicer):
    def __init__(self, core: FelixCore) -> None:
        self._core = core

    def WaitReady(
        self, request: felix_services_pb2.EndpointReadyRequest, context: grpc.ServicerContext
    ) -> felix_services_pb2.EndpointReadyReply:
        if not request.id.workload_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id.workload_id is required")
        timeout_ms = min(request.timeout_ms or DEFAULT_WAIT_MS, MAX_WAIT_MS)
        ready, reason = self._core.wait_endpoint_ready(messages.wep_key(request.id),
                                                       timeout_ms / 1000)  # fmt: skip
        log.info("endpoint wait id=%s ready=%s reason=%s",
                 "/".join(messages.wep_key(request.id)), ready, reason)  # fmt: skip
        return felix_services_pb2.EndpointReadyReply(ready=ready, reason=reason)


def serve(core: FelixCore, socket_path: str, max_workers: int = 16) -> grpc.Server:
    """Start the three services on ``unix:socket_path`` (a stale socket file is replaced)."""
    os.makedirs(os.path.dirname(socket_path) or ".", exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="grpc"))  # fmt: skip
    felix_services_pb2_grpc.add_CalcGraphServicer_to_server(CalcGraphService(core), server)
    felix_services_pb2_grpc.add_LearnedRoutesServicer_to_server(LearnedRoutesService(core), server)
    felix_services_pb2_grpc.add_EndpointStatusServicer_to_server(
        EndpointStatusService(core), server
    )
    if not server.add_insecure_port(f"unix:{socket_path}"):
        raise OSError(f"cannot listen on unix socket {socket_path}")
    server.start()
    log.info("grpc listening socket=%s", socket_path)
    return server
