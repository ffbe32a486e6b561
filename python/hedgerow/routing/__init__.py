"""The router: route plans, attempts, failover; ``Gateway`` itself."""

from hedgerow.routing.gateway import ChatResult, Gateway, GatewayError, Served, StreamReply

__all__ = ["ChatResult", "Gateway", "GatewayError", "Served", "StreamReply"]
