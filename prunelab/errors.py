"""One exception type for every input problem a user can fix; stages turn it into exit code 2."""


class PrunelabError(ValueError):
    """Bad input (a param, a dataset path, a checkpoint): the message names the culprit."""
