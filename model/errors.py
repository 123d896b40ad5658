"""One error type for a value the model cannot take. It names the field at fault (as the request
would name it: "text", "ids.3", "interventions.0.head"), a stable `code` a page can key its own
message on, and a sentence a student understands. The server maps it to a 422 with one handler."""

from __future__ import annotations


class FieldError(ValueError):
    """A value the model cannot take. `code` says what kind of fault: "invalid" when it breaks
    the request's own rules, or a context code (out_of_range, not_applicable, ...) when it is
    well formed but does not fit this model, prompt or run. `extra`: more facts for the body
    (e.g. n_tokens and limit). `detail` is the whole sentence: the field, then the message."""

    field: str = "body"
    code: str = "invalid"
    prefixed = True  # detail reads "field: message"

    def __init__(self, message: str, field: str | None = None, code: str | None = None, **extra):
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field
        if code is not None:
            self.code = code
        self.extra = extra

    @property
    def detail(self) -> str:
        return f"{self.field}: {self.message}" if self.prefixed else self.message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        """Pickled with every field (app/cluster.py carries errors between processes)."""
        return _rebuild, (type(self), self.args, self.__dict__.copy())


def _rebuild(cls: type, args: tuple, state: dict) -> FieldError:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error
