"""A bundled, fictional Arabic news site for ``python -m pipeline demo``, the tests and the benchmark.

``corpus.yaml`` holds the outlets, their page templates, their feeds and the articles; ``site.py`` turns
it into a mapping of request paths to responses that a small local HTTP server can serve.
"""

# Where the demo's mail goes when nothing else is set (`python -m pipeline demo`, `standalone --demo`):
# the analysts' digest and the operators' feed alerts, as .eml files in the outbox.
DEMO_ALERT_TO = ("analyst@example.org",)
DEMO_ALERT_FROM = "news-pipeline@localhost"
DEMO_OPS_ALERT_TO = ("ops@example.org",)
