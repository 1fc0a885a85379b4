"""Day 08's exercise and its checks."""
