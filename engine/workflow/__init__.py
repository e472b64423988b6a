"""The workflow format and its evaluation: definitions, validation and plain-word problems, variables,
templates, conditions, schedules, business hours, input limits. Pure: no database, no I/O.
"""
