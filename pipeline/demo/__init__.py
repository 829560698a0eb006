"""A bundled, fictional Arabic news site for ``python -m pipeline demo``, the tests and the benchmark.

``corpus.yaml`` holds the outlets, their page templates, their feeds and the articles; ``site.py`` turns
it into a mapping of request paths to responses that a small local HTTP server can serve.
"""
