"""Arabic news ingestion: poll feeds, extract articles, keep Arabic, deduplicate, index in Elasticsearch."""

__version__ = "0.1.0"
