"""RPM version comparison in Python: a line-by-line port of rpm's ``rpmvercmp`` (rpmio/rpmvercmp.c).

Segments of digits compare numerically (leading zeros ignored) and beat letters; letters compare
as strings; ``~`` sorts before anything (even the end), ``^`` after the end but before anything
else; other characters only separate segments.
"""

from __future__ import annotations


def _isalnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _isdigit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _isalpha(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def rpmvercmp(a: str, b: str) -> int:
    """-1, 0 or 1 as version (or release) ``a`` is older than, equal to or newer than ``b``."""
    if a == b:
        return 0
    one, two = a + "\0", b + "\0"  # NUL-terminated like the C original
    i = j = 0
    while one[i] != "\0" or two[j] != "\0":
        while one[i] != "\0" and not _isalnum(one[i]) and one[i] not in "~^":
            i += 1
        while two[j] != "\0" and not _isalnum(two[j]) and two[j] not in "~^":
            j += 1
        if one[i] == "~" or two[j] == "~":
            if one[i] != "~":
                return 1
            if two[j] != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if one[i] == "^" or two[j] == "^":
            if one[i] == "\0":
                return -1
            if two[j] == "\0":
                return 1
            if one[i] != "^":
                return 1
            if two[j] != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if one[i] == "\0" or two[j] == "\0":
            break
        end1, end2 = i, j
        isnum = _isdigit(one[i])
        test = _isdigit if isnum else _isalpha
        while one[end1] != "\0" and test(one[end1]):
            end1 += 1
        while two[end2] != "\0" and test(two[end2]):
            end2 += 1
        if end1 == i:
            return -1  # cannot happen: arbitrary, as in rpm
        if end2 == j:
            return 1 if isnum else -1  # numeric segments are newer than alpha ones
        seg1, seg2 = one[i:end1], two[j:end2]
        if isnum:
            seg1, seg2 = seg1.lstrip("0"), seg2.lstrip("0")
            if len(seg1) != len(seg2):
                return 1 if len(seg1) > len(seg2) else -1
        if seg1 != seg2:
            return 1 if seg1 > seg2 else -1
        i, j = end1, end2
    if one[i] == "\0" and two[j] == "\0":
        return 0
    return -1 if one[i] == "\0" else 1


def label_compare(a: tuple[int | str | None, str, str], b: tuple[int | str | None, str, str]) -> int:
    """Compare (epoch, version, release) tuples like rpm's ``rpmVersionCompare``."""
    epoch_a, epoch_b = int(a[0] or 0), int(b[0] or 0)
    if epoch_a != epoch_b:
        return 1 if epoch_a > epoch_b else -1
    return rpmvercmp(a[1], b[1]) or rpmvercmp(a[2], b[2])
