"""The jwks service."""
