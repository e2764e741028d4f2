"""Explanations for rejects: region facts, language-model backends and the queue worker.

Torch and transformers are imported only by the ``batterygpt`` backend, so the template and
OpenAI-compatible backends run on a box without them.
"""
