"""Day 01's exercise and its checks."""
