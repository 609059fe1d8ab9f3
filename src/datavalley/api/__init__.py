"""The HTTP API: a FastAPI shell over the service layer (one router per domain)."""

from datavalley.api.app import create_app

__all__ = ["create_app"]
