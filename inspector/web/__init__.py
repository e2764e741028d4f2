"""The technicians' page (FastAPI): rejects, their pictures and explanations, and a chat.

Kept import-light: the application (FastAPI) lives in ``inspector.web.app``, its config in
``inspector.config.web``. ``create_app`` builds the application from the routes in
``inspector.web.routers`` (one module per concern), the shared pieces in ``deps`` and the
login wall in ``guard``.
"""
