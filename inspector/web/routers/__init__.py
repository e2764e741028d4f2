"""The technicians' page's routes, one module per concern; ``create_app`` includes them.

- ``health``: ``GET /health``, open to all (monitoring).
- ``static``: ``GET /static/{name}``, the stylesheet and icons.
- ``auth``: the login form, logging in and out.
- ``rejects``: ``/`` and the list of recent rejects, one reject's page.
- ``pictures``: a reject's frame, its overlay and thumbnail as PNG.
- ``chat``: a follow-up question about a reject, answered by the chat function.
- ``feedback``: a technician's label for a reject, from the page or as JSON.

Each route reaches what it shares through ``inspector.web.deps.State``; login, the lock-out
and the cross-site check happen before any route, in ``inspector.web.guard``.
"""
