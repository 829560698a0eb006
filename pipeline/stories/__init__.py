"""Stories across outlets: fingerprints, exact dedup, near-duplicate clusters, the second half of a cycle."""
