"""stalwart.api — the HTTP face of Stalwart: FastAPI routes, authentication (API keys, OIDC/JWT),
org-scoped authorization, rate limits, the OpenAI-compatible gateway endpoint and the web console.

``create_app(app)`` returns the FastAPI application; ``stalwart server`` runs it under uvicorn.
Domain errors become HTTP statuses here and nowhere else (:data:`STATUS`).
"""

from stalwart.api._app import bootstrap_admin_key, create_app
from stalwart.api._config import DEFAULT_ORG, ROLES, ApiSettings
from stalwart.api._errors import STATUS
from stalwart.governance import ApiKey, KeyStore

__all__ = [
    "DEFAULT_ORG",
    "ROLES",
    "STATUS",
    "ApiKey",
    "ApiSettings",
    "KeyStore",
    "bootstrap_admin_key",
    "create_app",
]
