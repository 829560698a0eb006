"""How outlets covered a story or a topic: related stories, comparisons, distinctive terms, the HTML report."""
