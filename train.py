"""`python train.py`: the course's name for `churn train` (churn/commands/train.py)."""

from churn.commands.train import main

if __name__ == "__main__":
    raise SystemExit(main())
