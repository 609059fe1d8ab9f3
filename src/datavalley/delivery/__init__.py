"""Delivery under contract: a Delta Sharing server on the node, policies, metering and leak tracing."""
