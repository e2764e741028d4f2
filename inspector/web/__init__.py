"""The technicians' page (FastAPI): rejects, their pictures and explanations, and a chat.

Kept import-light so the station config can import ``inspector.web.config`` without FastAPI.
``inspector.web.app.create_app`` builds the application from the routes in
``inspector.web.routers`` (one module per concern), the shared pieces in ``deps`` and the
login wall in ``guard``.
"""
