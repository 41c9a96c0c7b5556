"""Channels to tistudio services, with the same message-size cap the servers use.

Calls are balanced round-robin over every address the name resolves to: against a headless Kubernetes Service
(caption, preview) that spreads calls over all ready replicas instead of pinning a client to one pod. The servers
close connections after a few minutes (`grpc.max_connection_age_ms`), so a long-lived channel re-resolves and finds
replicas added by a scale-up.
"""

from __future__ import annotations

import grpc

__all__ = ["MAX_MESSAGE_BYTES", "open_channel"]

# Must match the servers' TISTUDIO_MAX_MESSAGE_BYTES (16 MiB by default): large enough for a few inline
# thumbnails or an embedding file; anything bigger travels as a storage reference.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_ROUND_ROBIN = '{"loadBalancingConfig": [{"round_robin": {}}]}'


def open_channel(
    address: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.service_config", _ROUND_ROBIN),
    ]
    if credentials is not None:
        return grpc.secure_channel(address, credentials, options=options)
    return grpc.insecure_channel(address, options=options)
