"""The HTTP layer, the only one that imports aiohttp and jinja2: every route (routes), the
user API's handlers (api/), the dashboard (dashboard/, templates/, static/), errors as JSON
(middleware), the access log, the app's typed keys, how rows look over HTTP (views, and the
polled experiment view kept as bytes, viewcache), and the OpenAPI document."""
