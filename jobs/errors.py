"""The one error type the job reports per input instead of crashing."""

# Said only when no digit is there (jobs/ink.py, jobs/cleanup.py, jobs/normalize.py).
BLANK = "no ink found: the image is blank"


class InputError(Exception):
    """An input that cannot be classified; str(error) is one line a person understands."""
