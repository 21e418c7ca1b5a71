"""The one exception type for user mistakes; the CLI prints it on one line and exits 2."""


class GenlabError(Exception):
    """A user mistake (bad input, bad config, missing file), explained in a sentence that says what to do."""


class TrainingDiverged(GenlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(GenlabError):
    """Training was stopped by Ctrl-C after saving a checkpoint that `--resume` continues from."""


def article(name: str) -> str:
    """`name` with its indefinite article, for messages: "a vae", "an ae"."""
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name
