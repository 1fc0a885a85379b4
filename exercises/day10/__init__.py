"""Day 10's exercise and its checks."""
