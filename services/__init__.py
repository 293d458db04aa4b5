"""Attune services; each is an aiohttp app built by its own create_app(settings)."""
