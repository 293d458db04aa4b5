"""The launch service."""
