"""Day 03's exercise and its checks."""
