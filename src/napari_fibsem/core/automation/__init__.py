"""Automated runs: workflow steps, alignment, the data engine, the closed loop and run set-up."""
