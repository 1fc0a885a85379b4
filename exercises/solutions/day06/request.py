"""Day 6 reference solution: the request body as a strict pydantic model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Customer(BaseModel):
    """One customer to score."""

    model_config = ConfigDict(extra="forbid")

    tenure: int = Field(ge=0, le=72)
    MonthlyCharges: float = Field(gt=0)
    Contract: Literal["Month-to-month", "One year", "Two year"]
    TotalCharges: float | None = Field(default=None, ge=0)
