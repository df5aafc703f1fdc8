"""Edit scripts: how a word's form turns into its lemma, as a label a tagger can learn (UDPipe's lemma
rules, spaCy's edit trees): keep the longest substring form and lemma share, replace what is around it.

A script is "<case>|<cut front>|<add front>|<cut end>|<add end>" ("<case>=" when the lemma is the form up
to casing), its edits found on the lower-cased form and lemma; the case says how the lemma is cased:
l (all lower), u (all upper), f (as the form: the kept part keeps its letters' case), t (title: the first
letter upper, the rest as the form), c (capitalised: the first letter upper, the rest lower), k (exactly as
given: the edits made on the form as it is). A lower-case lemma takes l, else the first of u, f, t, c that
gives it back, so a script does not depend on the form's casing where the lemma does not: "The" and "the"
-> "the" are one label, "I" and "i" -> "I" one too, a name keeps its form's case (f), and a name in capitals
whose lemma is capitalised ("STEVENS" -> "Stevens") is "c=" for every such name, not a k script of its own
— an uncased encoder cannot see the case of the form.

One more kind of script drops a character wherever it is: "d<c>" ("d," for the thousands separators of
"19,250,000" -> "19250000"), so every number written with separators has one label, where the cut-and-add
edits would spell out each number's own; it fits only a form that has the character.

    edit_script("Running", "run")     ->  'l|||ning|'    cut "ning" from the end, lower-case
    edit_script("studies", "study")   ->  'l|||ies|y'    "ies" at the end becomes "y"
    edit_script("Paris", "Paris")     ->  'f='           the form as it is
    edit_script("STEVENS", "Stevens") ->  'c='           capitalised
    edit_script("3,500", "3500")      ->  'd,'           every "," dropped
    apply_script('l|||ning|', "Sitting")  ->  None       the script does not fit: "sitting" lacks "ning"

`apply_script` checks the cut strings are there, so a script learnt from another word never produces
garbage: it returns None, and the lemmatizer falls back.
"""

from __future__ import annotations

import functools

SEPARATOR = "|"
CASES = {
    "u": str.upper,
    "l": str.lower,
    "t": lambda s: s[:1].upper() + s[1:],
    "c": lambda s: s[:1].upper() + s[1:].lower(),
}
DROP = "d"  # "d<c>": the form without any <c>


@functools.lru_cache(maxsize=1 << 17)  # asked again for every word of every batch (training targets)
def edit_script(form: str, lemma: str) -> str:
    """The script that turns `form` into `lemma` (apply_script(edit_script(f, l), f) == l for every pair)."""
    if SEPARATOR in form + lemma or len(form.lower()) != len(form) or len(lemma.lower()) != len(lemma):
        return f"={len(lemma)}:{lemma}"  # a lemma spelled out whole: only for the odd pair
    dropped = {c for c in form if not c.isalnum() and c not in lemma}  # one such character: maybe a d script
    if len(dropped) == 1 and lemma and form.replace(char := min(dropped), "") == lemma:
        return DROP + char
    edits = edit_of(form.lower(), lemma.lower())
    for case in ("l", "f", "t") if lemma == lemma.lower() else ("u", "f", "t", "c"):
        script = f"{case}{edits}"
        if apply_script(script, form) == lemma:
            return script
    return f"k{edit_of(form, lemma)}"


def edit_of(base: str, target: str) -> str:
    """ "=" or "|<cut front>|<add front>|<cut end>|<add end>": the edits that make `target` of `base`."""
    if base == target:
        return "="
    i, j, k = longest_common_substring(base, target)
    return SEPARATOR + SEPARATOR.join((base[:i], target[:j], base[i + k :], target[j + k :]))


def apply_script(script: str, form: str) -> str | None:
    """The lemma `script` makes of `form`, or None where the script does not fit the form."""
    if script.startswith("="):
        return script.partition(":")[2]
    if script.startswith(DROP):
        return form.replace(script[1:], "") if script[1:] in form else None
    case, edits = script[0], script[1:]
    base = form if case == "k" else form.lower()  # where the cut strings are looked for
    if edits == "=":
        kept = form
    else:
        _, cut_front, add_front, cut_end, add_end = edits.split(SEPARATOR)
        if len(cut_front) + len(cut_end) > len(base):
            return None
        if not (base.startswith(cut_front) and base.endswith(cut_end)):
            return None
        middle = slice(len(cut_front), len(base) - len(cut_end))
        if middle.start == middle.stop and (cut_front or cut_end) and base != cut_front + cut_end:
            return None  # a script that keeps nothing of the form rewrites one word whole
        kept = add_front + form[middle] + add_end
    if case in ("f", "k"):
        return kept
    return CASES[case](kept)


def longest_common_substring(a: str, b: str) -> tuple[int, int, int]:
    """(i, j, k): a[i:i+k] == b[j:j+k] is the longest common substring (the first such in a, then b)."""
    best = (0, 0, 0)
    previous = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        current = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                current[j] = previous[j - 1] + 1
                if current[j] > best[2]:
                    best = (i - current[j], j - current[j], current[j])
        previous = current
    return best
