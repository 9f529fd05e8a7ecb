"""QR codes for the stamp: segno encodes, the data mask is chosen here, several times faster.

Of the 2.7 ms segno took for a stamp's QR code, 2.2 ms went to choosing the data mask
(ISO/IEC 18004:2015, 7.8.3): segno applies each of the eight masks and scores the result
module by module in pure Python. Here segno encodes once with mask 0 (its public API, no
evaluation); the eight candidates are derived from that matrix by XOR on the whole symbol
held as one integer (row by row, and column by column), and scored with shifts and bit
counts by the same four rules and with the same tie-break as segno (the first mask with the
lowest penalty): 0.65 ms in all. The code drawn is therefore the very code segno would
make; ``tests/pki/test_qr.py`` compares the two over many links and versions. What depends
on the symbol's size only is computed once per size (a few ms).

Like segno, masks are scored before the format and version information is written (those
modules count as light), as the standard says.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import segno

#: Error correction level M (15 %): its two format bits are 00 (ISO/IEC 18004, table 12).
_LEVEL_M_BITS = 0b00
_FORMAT_GENERATOR = 0b10100110111  # BCH(15,5) generator polynomial
_FORMAT_XOR = 0b101010000010010  # the format information mask

#: The eight data mask conditions (row i, column j): a module is flipped where True.
_MASKS: tuple[Callable[[int, int], bool], ...] = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: (i * j) % 2 + (i * j) % 3 == 0,
    lambda i, j: ((i * j) % 2 + (i * j) % 3) % 2 == 0,
    lambda i, j: ((i + j) % 2 + (i * j) % 3) % 2 == 0,
)

_FINDER_LIKE = "1011101"  # dark:light:dark:light:dark in 1:1:3:1:1


def qr_rows(link: str) -> tuple[bytes, ...]:
    """The rows of ``link``'s QR code at level M as bytes, 0 for a light module and 1 for
    a dark one, top row first, no quiet zone: segno's code with segno's choice of mask."""
    code = segno.make_qr(link, error="m", boost_error=False, mask=0)
    matrix = code.matrix
    size = len(matrix)
    layout = _layout(size)
    # The whole symbol as one integer (row by row, or column by column), the first module
    # in the most significant bit; scored as the standard says: mask 0 taken off again,
    # the format and version information light.
    rows = int(b"".join(matrix).translate(_BITS_TO_ASCII), 2)
    columns = int(b"".join(bytes(column) for column in zip(*matrix, strict=True))
                  .translate(_BITS_TO_ASCII), 2)
    base_rows = (rows & layout.scored_rows) ^ layout.rows[0]
    base_columns = (columns & layout.scored_columns) ^ layout.columns[0]
    best, best_score = 0, -1
    for mask in range(8):
        score = layout.penalty(base_rows ^ layout.rows[mask], base_columns ^ layout.columns[mask])
        if best_score < 0 or score < best_score:
            best, best_score = mask, score
    final = rows ^ layout.rows[0] ^ layout.rows[best]
    final = (final & ~layout.format_modules) | layout.format_values[best]
    text = format(final, f"0{size * size}b").encode("ascii").translate(_ASCII_TO_BITS)
    return tuple(text[k:k + size] for k in range(0, size * size, size))


_BITS_TO_ASCII = bytes.maketrans(b"\x00\x01", b"01")
_ASCII_TO_BITS = bytes.maketrans(b"01", b"\x00\x01")


class _Layout:
    """What depends on the symbol size only, as integers over the whole symbol (row-major
    and column-major): each mask's flips, the modules scored, the format information of
    each mask, and the bit masks that keep the scoring rules inside one row or column."""

    def __init__(self, size: int) -> None:
        self.size = size
        region = _encoding_region(size)
        information = _information_modules(size)
        cells = [(i, j) for i in range(size) for j in range(size)]

        def packed(flag: Callable[[int, int], bool], by_column: bool = False) -> int:
            order = [(i, j) for j in range(size) for i in range(size)] if by_column \
                else cells
            return int("".join("1" if flag(i, j) else "0" for i, j in order), 2)

        def flips(condition: Callable[[int, int], bool], by_column: bool) -> int:
            return packed(lambda i, j: region[i][j] and condition(i, j), by_column)

        def dark_format(grid: dict[tuple[int, int], int]) -> int:
            return packed(lambda i, j: grid.get((i, j), 0) == 1)

        self.rows = [flips(condition, False) for condition in _MASKS]
        self.columns = [flips(condition, True) for condition in _MASKS]
        self.scored_rows = packed(lambda i, j: (i, j) not in information)
        self.scored_columns = packed(lambda i, j: (i, j) not in information, by_column=True)
        positions = set(_format_grid(size, 0))
        self.format_modules = packed(lambda i, j: (i, j) in positions)
        self.format_values = [dark_format(_format_grid(size, mask)) for mask in range(8)]
        # Bit p stands for position size*size - 1 - p in reading order; within a line of
        # `size`, offset o = p % size counts from the line's last module.
        total = size * size
        line = [p % size for p in range(total)]

        def bits(keep: Callable[[int], bool]) -> int:
            return sum(1 << p for p in range(total) if keep(p))

        self.line_mask = (1 << size) - 1
        self.pairs = bits(lambda p: line[p] < size - 1)  # p and p + 1 in one line
        self.blocks = bits(lambda p: line[p] < size - 1 and p < total - size)
        self.windows = bits(lambda p: line[p] <= size - 7)  # p .. p + 6 in one line
        # Modules k before (higher bits) or after (lower bits) a window that fall outside
        # its line count as light, as segno's clipped slices do.
        def outside(shift: int) -> int:
            return bits(lambda p: not 0 <= line[p] + shift < size)

        self.outside_before = [outside(k) for k in range(7, 11)]
        self.outside_after = [outside(-k) for k in range(1, 5)]

    def penalty(self, rows: int, columns: int) -> int:
        """The penalty score of a masked symbol (ISO/IEC 18004, 7.8.3.1), as segno counts
        it: N1 and N3 over rows and columns, N2 and N4 over the symbol."""
        size = self.size
        score = self._runs(rows) + self._runs(columns)
        score += self._finder_like(rows) + self._finder_like(columns)
        # N2: each 2 x 2 block of one colour scores 3.
        differs = (rows ^ (rows >> 1)) | (rows ^ (rows >> size)) | \
            ((rows >> size) ^ (rows >> (size + 1)))
        score += 3 * (self.blocks.bit_count() - (differs & self.blocks).bit_count())
        # N4: 10 for each 5 % the dark modules stray from half.
        score += 10 * int(abs(float(rows.bit_count()) / (size * size) * 100 - 50) / 5)
        return score

    def _runs(self, symbol: int) -> int:
        """N1: a run of 5 + i modules of one colour in a line scores 3 + i."""
        same = ~(symbol ^ (symbol >> 1)) & self.pairs
        four = same & (same >> 1) & (same >> 2) & (same >> 3)  # starts 5 alike
        return four.bit_count() + 2 * (four & ~(four >> 1)).bit_count()

    def _finder_like(self, symbol: int) -> int:
        """N3: a 1:1:3:1:1 pattern with four light modules before or after it scores 40.
        Overlapping patterns (segno skips one counted just before) are counted line by
        line as segno does."""
        light = ~symbol
        found = symbol & (light >> 1) & (symbol >> 2) & (symbol >> 3) & (symbol >> 4) & \
            (light >> 5) & (symbol >> 6) & self.windows
        if not found:
            return 0
        before = after = -1
        for k, outside in zip(range(7, 11), self.outside_before, strict=True):
            before &= (light >> k) | outside
        for k, outside in zip(range(1, 5), self.outside_after, strict=True):
            after &= (light << k) | outside
        score = 40 * (found & (before | after)).bit_count()
        overlapping = found & ((found >> 4) | (found >> 6))
        size = self.size
        done: set[int] = set()
        while overlapping:
            top = overlapping.bit_length() - 1
            overlapping &= ~(1 << top)
            for index in {top // size, (top + 6) // size}:
                if index in done or index >= size:
                    continue
                done.add(index)
                shift = index * size
                counted = (found & (before | after)) >> shift & self.line_mask
                text = format(symbol >> shift & self.line_mask, f"0{size}b")
                score += _finder_like(text, size) - 40 * counted.bit_count()
        return score


@lru_cache(maxsize=8)
def _layout(size: int) -> _Layout:
    return _Layout(size)


def _alignment_centres(version: int) -> list[int]:
    """Row/column coordinates of the alignment pattern centres (ISO/IEC 18004, annex E):
    6, then evenly spaced by an even step up to ``size - 7`` (the table of annex E follows
    this rule, with version 32 the one exception)."""
    if version == 1:
        return []
    count = version // 7 + 2
    size = 4 * version + 17
    step = 26 if version == 32 else (4 * version + 2 * count + 1) // (2 * count - 2) * 2
    return [6, *sorted(size - 7 - step * k for k in range(count - 1))]


def _information_modules(size: int) -> set[tuple[int, int]]:
    """The format information modules (with the dark module) and, from version 7 on, the
    version information modules."""
    found: set[tuple[int, int]] = set()
    for k in range(9):
        if k != 6:  # the timing pattern crosses there
            found.add((k, 8))
            found.add((8, k))
    for k in range(8):
        found.add((size - 1 - k, 8))
        found.add((8, size - 1 - k))
    if size >= 45:
        for a in range(6):
            for b in range(size - 11, size - 8):
                found.add((a, b))
                found.add((b, a))
    return found


def _encoding_region(size: int) -> list[list[bool]]:
    """True where a module carries data (the masks apply), False on function patterns."""
    version = (size - 17) // 4
    region = [[True] * size for _ in range(size)]

    def clear(top: int, left: int, height: int, width: int) -> None:
        for i in range(max(top, 0), min(top + height, size)):
            for j in range(max(left, 0), min(left + width, size)):
                region[i][j] = False

    for top, left in ((0, 0), (0, size - 8), (size - 8, 0)):  # finders and separators
        clear(top, left, 8, 8)
    clear(6, 0, 1, size)  # timing patterns
    clear(0, 6, size, 1)
    centres = _alignment_centres(version)
    corners = {(centres[0], centres[0]), (centres[0], centres[-1]),
               (centres[-1], centres[0])} if centres else set()
    for row in centres:
        for column in centres:
            if (row, column) not in corners:
                clear(row - 2, column - 2, 5, 5)
    for i, j in _information_modules(size):
        region[i][j] = False
    return region


def _finder_like(text: str, size: int) -> int:
    """N3 in one line, searched left to right as segno does: after a counted pattern the
    search goes on past it, after an uncounted one from its middle."""
    score = 0
    index = text.find(_FINDER_LIKE)
    while index != -1:
        after = index + 7
        if index in (0, size - 7) or "1" not in text[max(index - 4, 0):index] \
                or "1" not in text[after:after + 4]:
            score += 40
        else:
            after = index + 4
        index = text.find(_FINDER_LIKE, after)
    return score


def _format_bits(mask: int) -> int:
    """The 15 format information bits for level M and ``mask`` (BCH(15,5), then XOR)."""
    data = (_LEVEL_M_BITS << 3) | mask
    remainder = data << 10
    for shift in range(4, -1, -1):
        if remainder & (1 << (shift + 10)):
            remainder ^= _FORMAT_GENERATOR << shift
    return ((data << 10) | remainder) ^ _FORMAT_XOR


def _format_grid(size: int, mask: int) -> dict[tuple[int, int], int]:
    """The format information modules for ``mask`` and their values (bit 0 is the least
    significant of the 15; placed as segno places them, ISO/IEC 18004 figure 25), with
    the dark module."""
    bits = _format_bits(mask)
    grid: dict[tuple[int, int], int] = {}
    for k in range(8):
        low, high = (bits >> k) & 1, (bits >> (14 - k)) & 1
        step = k if k < 6 else k + 1  # past the timing pattern at row and column 6
        grid[step, 8] = low  # upper left, down column 8: bits 0..7
        grid[8, step] = high  # upper left, along row 8: bits 14..7
        grid[8, size - 1 - k] = low  # upper right, along row 8: bits 0..7
        grid[size - 1 - k, 8] = high  # lower left, up column 8: bits 14..7
    grid[size - 8, 8] = 1  # the dark module
    return grid


__all__ = ["qr_rows"]
