"""Day 6 exercise: validate a request before it reaches the model.

The service answers 422 naming the field when a request is wrong; FastAPI does that from a
pydantic model. Write `Customer`, the body of a small scoring request, so that:

  1. tenure is an int from 0 to 72 (inclusive);
  2. MonthlyCharges is a float greater than 0;
  3. Contract is one of "Month-to-month", "One year", "Two year" (typing.Literal);
  4. TotalCharges is a float >= 0 or None, and may be left out (default None);
  5. an unknown field is refused, not ignored (a typo like "tenur" must not pass silently):
     model_config = ConfigDict(extra="forbid").

`make check DAY=6` sends good and bad bodies through Customer.model_validate and checks that
each bad one raises pydantic.ValidationError naming the right field (error["loc"]).
Hint: pydantic.Field(ge=..., le=..., gt=...).
"""

from __future__ import annotations

from pydantic import BaseModel


class Customer(BaseModel):
    """One customer to score."""

    # TODO: the four fields with their constraints, and the model_config
    tenure: int
