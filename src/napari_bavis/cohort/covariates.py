"""Ages and sexes of a cohort's scans from a CSV or TSV table (matched by file or scan name)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..summary import one_line as _one_line
_KEY_COLUMNS = ("file", "filename", "file_name", "path", "scan", "scan_name", "name", "subject", "id")
_AGE_COLUMNS = ("age", "chronological_age", "age_years")
_SEX_COLUMNS = ("sex", "gender")
_SEXES = {"f": "F", "female": "F", "m": "M", "male": "M"}



@dataclass
class Covariates:
    age: float | None = None
    sex: str | None = None


def _parse_sex(value: str, where: str) -> str | None:
    v = value.strip().lower()
    if not v:
        return None
    if v not in _SEXES:
        raise UsageError(f"{where}: sex {value!r} is not F or M")
    return _SEXES[v]


def _parse_age(value: str, where: str) -> float | None:
    v = value.strip()
    if not v:
        return None
    try:
        age = float(v)
    except ValueError:
        raise UsageError(f"{where}: age {value!r} is not a number") from None
    if not 0 <= age < 150:
        raise UsageError(f"{where}: age {age:g} is not a plausible age in years")
    return age


def read_covariates(path) -> dict[str, Covariates]:
    """CSV (or TSV) with a header naming a file/scan column and age and/or sex columns.

    Keys are file names (with suffix), scan names (without) and the values as written, so a row
    matches a scan by any of them.
    """
    from ..io import scan_name

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--covariates {p}: cannot read it ({_one_line(err)})") from None
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise UsageError(f"--covariates {p}: the file is empty")
    header = [h.strip().lower() for h in rows[0]]
    key_col = next((header.index(c) for c in _KEY_COLUMNS if c in header), None)
    age_col = next((header.index(c) for c in _AGE_COLUMNS if c in header), None)
    sex_col = next((header.index(c) for c in _SEX_COLUMNS if c in header), None)
    if key_col is None or (age_col is None and sex_col is None):
        raise UsageError(
            f"--covariates {p}: unknown column layout {rows[0]}; expected a header with a file column "
            f"({'/'.join(_KEY_COLUMNS[:2])} or scan) and age and/or sex columns"
        )
    table: dict[str, Covariates] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        where = f"--covariates {p.name} line {line_no}"
        row = row + [""] * (len(header) - len(row))
        key = row[key_col].strip()
        if not key:
            raise UsageError(f"{where}: the file column is empty")
        cov = Covariates(
            age=_parse_age(row[age_col], where) if age_col is not None else None,
            sex=_parse_sex(row[sex_col], where) if sex_col is not None else None,
        )
        for k in {key, Path(key).name, scan_name(key)}:
            table[k] = cov
    return table


def covariates_for(scan: Path, table: dict[str, Covariates]) -> Covariates | None:
    from ..io import scan_name

    for k in (str(scan), scan.name, scan_name(scan)):
        if k in table:
            return table[k]
    return None
