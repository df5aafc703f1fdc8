"""User errors: input the user can fix (a bad corpus, path, encoder name or hyper-parameter).

The command-line entry points print them as one line, `error: <message>`, and exit 1; any other exception
is a bug and keeps its traceback (as do user errors under HYDRA_FULL_ERROR=1). No dependencies: the
spaCy components import it, and a packaged pipeline ships it.
"""

from __future__ import annotations


class UserError(Exception):
    """Wrong input the user can fix; the message says what is wrong and where."""


def find_user_error(err: BaseException | None) -> BaseException | None:
    """The user error in `err`'s chain of explicit causes (Hydra wraps errors raised while instantiating
    as `InstantiationException(...) from err`), or None for a bug."""
    from polyhead.data.schema import CorpusError

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, (UserError, CorpusError)):
            return err
        seen.add(id(err))
        err = err.__cause__
    return None
