"""A small OpenID Connect provider in the sandbox: discovery, a key set with rotation, and a
client-credentials token endpoint, so the platform's provider mode runs and is tested locally."""

from sandbox.oidc.keys import KeyRing
from sandbox.oidc.routes import issuer_of, oidc_router

__all__ = ["KeyRing", "issuer_of", "oidc_router"]
