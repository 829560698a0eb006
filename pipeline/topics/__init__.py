"""Topic profiles: loading and matching (terms, rules, weights), drafting from a report, evaluation, re-tagging."""
