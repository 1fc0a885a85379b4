"""The course's exercises: one skeleton a learner edits per day, and the checks that say what is
still wrong (`make check DAY=N`). See exercises/README.md."""
