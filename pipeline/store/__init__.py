"""Where state lives: the search server (client, indices, bucket store, journal, seen ledger), the embedded server, the
landing area, local locks.
"""
