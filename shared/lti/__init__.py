"""The LTI 1.3 core: framework-free login and launch logic used by the aiohttp services."""
