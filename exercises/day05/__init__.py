"""Day 05's exercise and its checks."""
