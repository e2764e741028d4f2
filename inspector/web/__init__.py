"""The technicians' page (FastAPI): rejects, their pictures and explanations, and a chat.

Kept import-light so the station config can import ``inspector.web.config`` without FastAPI;
the application lives in ``inspector.web.app``.
"""
