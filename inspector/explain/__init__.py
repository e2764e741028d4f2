"""Explanations for rejects: region facts, language-model writers and the queue worker.

Torch and transformers are imported only by the ``batterygpt`` writer, so the template and
OpenAI-compatible writers run on a box without them.
"""
