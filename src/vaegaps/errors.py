"""One exception type for every error a user can fix; stage scripts print it as one line."""


class VaegapsError(Exception):
    """A problem with the user's input, data or config; the message names it and the fix."""
