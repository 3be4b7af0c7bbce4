"""The HTTP (and WebSocket) routes, one `APIRouter` per area: sessions, compare, lessons, meta, pages.

`create_app` includes each module's `router`; the routers never import each other and keep
their handlers short, calling the server modules below them (forks, compare, lessons, actions).
"""
