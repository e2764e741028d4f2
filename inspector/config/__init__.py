"""The station's one YAML configuration file, one module per section.

``station`` holds the whole file (``Config``) and its loader; each section has its own module
here on the one strict base (``inspector.core.config_base``): ``line`` (the ``station`` key),
``mqtt``, ``pipeline``, ``retention``, ``health``, ``products``, ``alarms``, ``pairing``, ``web``,
``drift`` and ``source``. Sections that belong to a plugin stay with it: each source kind's
config lives with its source (``inspector.sources``), the ``explainer`` section with the
explanation writers (``inspector.explain.config``).
"""
