"""Email alerts: selection and runs, the ledger, operator commands, the digest, mail delivery."""
