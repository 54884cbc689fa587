"""Charades-STA raw release: ``charades_sta_{train,test}.txt``, one annotation per line::

    AO8RW 0.0 6.9##a person is putting a book on a shelf.

The txt has no durations: they come from a separate file (see
:func:`vtg_rl.data.formats.common.load_durations`; the usual one is ``Charades_v1_{train,test}.csv``,
columns ``id, ..., length``). The release has no query ids either: ``qid`` is the 0-based index of the
annotation among the file's non-empty lines (stable for a given file), ``meta["line"]`` keeps the line.
"""

from __future__ import annotations

from vtg_rl.data.formats.common import (DurationsSpec, ParsedRows, PathLike, RowError, as_number, check_file,
                                        load_durations)
from vtg_rl.data.schema import NotUtf8Error, VTGSample, iter_lines
from vtg_rl.data.validate import MISSING_FIELD, PARSE_ERROR, UNKNOWN_DURATION, Location


def parse(path: PathLike, *, durations: DurationsSpec = None, **_) -> ParsedRows:
    path = check_file(path)
    if durations is None:
        raise ValueError(f"{path}: the Charades-STA txt release has no durations; pass durations= "
                         "(Charades_v1_*.csv with id/length columns, a 'vid seconds' txt, or a json mapping)")
    dur = load_durations(durations)
    out = ParsedRows(files=[str(path)], require_windows=True)
    index = 0
    for lineno, line in iter_lines(path):
        if isinstance(line, NotUtf8Error):  # one bad byte rejects its row, named by file:line
            out.reject(RowError(PARSE_ERROR, line.problem), Location(str(path), lineno), str(index))
            index += 1
            continue
        if not line.strip():
            continue
        qid = str(index)
        index += 1
        loc = Location(str(path), lineno)
        try:
            sample = _parse_line(line.rstrip("\n"), qid, dur)
        except RowError as err:
            out.reject(err, loc, qid)
            continue
        sample.meta["line"] = lineno
        out.add(sample, loc)
    return out


def _parse_line(line: str, qid: str, durations: dict[str, float]) -> VTGSample:
    if "##" not in line:
        raise RowError(PARSE_ERROR, "expected '<vid> <start> <end>##<sentence>'")
    head, query = line.split("##", 1)
    parts = head.split()
    if len(parts) != 3:
        raise RowError(PARSE_ERROR if parts else MISSING_FIELD,
                       f"expected '<vid> <start> <end>' before '##', got {head!r}")
    vid = parts[0]
    start, end = as_number(parts[1], "start"), as_number(parts[2], "end")
    if vid not in durations:
        raise RowError(UNKNOWN_DURATION, f"video {vid!r} has no entry in the durations file")
    return VTGSample(qid=qid, vid=vid, duration=durations[vid], query=query.strip(), windows=[[start, end]],
                     meta={"dataset": "charades-sta"})
