"""The technicians' page (FastAPI): rejects, their pictures and explanations, and a chat.

Kept import-light: the application (FastAPI) lives in ``inspector.web.app``, its config in
``inspector.config.web``.
"""
