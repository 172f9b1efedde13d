"""One exception type for every input problem a user can fix; stages turn it into exit code 2."""

import reprlib


class PrunelabError(ValueError):
    """Bad input (a param, a dataset path, a checkpoint): the message names the culprit."""


class ConfigError(PrunelabError):
    """A params file or a command-line value that is not allowed."""


class _Short(reprlib.Repr):
    """reprlib's bounded repr (a few items per level, two levels), and integers by size: repr()
    of an int past 4,300 digits raises, and a YAML anchor bomb's full repr takes minutes."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 2, 40, 40
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 4

    def repr_int(self, x, level):
        return repr(x) if x.bit_length() <= 128 else f"<an integer of {x.bit_length()} bits>"


_SHORT = _Short()
SHORT_CHARS = 60


def short(value) -> str:
    """repr(value) cut to at most SHORT_CHARS characters, in time and memory bounded whatever value is."""
    text = _SHORT.repr(value)
    return text if len(text) <= SHORT_CHARS else text[: SHORT_CHARS - 3] + "..."
