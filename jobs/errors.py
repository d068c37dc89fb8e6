"""The one error type the job reports per input instead of crashing."""


class InputError(Exception):
    """An input that cannot be classified; str(error) is one line a person understands."""
