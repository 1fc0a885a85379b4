"""Day 02's exercise and its checks."""
