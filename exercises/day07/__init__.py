"""Day 07's exercise and its checks."""
