"""`make bench-peers`: our service against the servers a user would pick instead (run.py), each
peer's pinned environment and glue in a directory here (servers.py says which)."""
