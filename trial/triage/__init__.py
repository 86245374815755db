"""Triage of a symptom report into a tier, with every reason that fired. Pure and total."""

from trial.triage.engine import Assessment, Reason, Report, asks_about_allocation, triage

__all__ = ["Assessment", "Reason", "Report", "asks_about_allocation", "triage"]
