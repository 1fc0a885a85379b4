"""Day 06's exercise and its checks."""
