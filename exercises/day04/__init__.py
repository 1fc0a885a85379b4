"""Day 04's exercise and its checks."""
