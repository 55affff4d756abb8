"""The dashboard: server-rendered pages over the same data as the API (aiohttp-jinja2)."""
