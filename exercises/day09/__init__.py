"""Day 09's exercise and its checks."""
