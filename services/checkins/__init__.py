"""The checkins service."""
