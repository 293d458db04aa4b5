"""The login service."""
