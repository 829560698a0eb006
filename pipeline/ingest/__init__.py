"""From feeds to articles: URLs, downloads, feed parsing, polling, extraction, language, the overlapped stream, the
first half of a cycle.
"""
