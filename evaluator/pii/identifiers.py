"""Personal identifiers that need a cue word: national identity and tax numbers (checked with
python-stdnum), dates of birth and passport numbers.

A 9- to 13-digit number with a valid check digit is still one random number in ten or a
hundred, and a date is usually not a birthday, so each of these counts only right after a
word that says what it is (`BSN 123456782`, `DOB: 1985-03-12`, `passport no. C01X00T47`).
The cue stays visible; only the value is masked. What is not covered (names, street
addresses, identifiers written without a cue) is listed in RELIABILITY.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import ModuleType

from stdnum.be import nn
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.de import idnr
from stdnum.dk import cpr
from stdnum.es import dni, nie
from stdnum.fi import hetu
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.no import fodselsnummer
from stdnum.pl import pesel
from stdnum.se import personnummer
from stdnum.us import itin

from evaluator.pii.detectors import joined_runs
from evaluator.pii.match import PiiMatch
from evaluator.pii.scan import TextScan

_NATIONAL_ID_FORMATS: tuple[ModuleType, ...] = (
    bsn, sin, idnr, aadhaar, cpf, dni, nie, pesel, nir, nhs, itin, codicefiscale, personnummer, cpr,
    fodselsnummer, hetu, nn,
)
"""Each module's `is_valid` checks length, structure and check digits of one country's number."""

_REACH = 24
"""Characters after a cue where its value may start (`Steueridentifikationsnummer: `)."""
_CUE_REACH = 40
"""Characters before a value's digits where its cue may start (`numéro de sécurité sociale 2 95 ...`)."""

_ID_CUE = re.compile(
    r"(?i)\b(?:bsn|burgerservicenummer|sin|social insurance(?: number)?|steuer-?id(?:-?nr\.?)?"
    r"|steueridentifikationsnummer|idnr|aadhaar(?: number)?|cpf|dni|nie|pesel|nir|nhs(?: number)?"
    r"|num[ée]ro de s[ée]curit[ée] sociale|itin|codice fiscale|cf|personnummer|cpr(?:-nr\.?)?"
    r"|f[øo]dselsnummer|henkil[öo]tunnus|hetu|rijksregisternummer|national (?:id|identity|insurance)"
    r"(?: number| no\.?)?|id (?:number|no\.?)|tax id|tin)\b"
)
_ID_VALUE = re.compile(r"[\s:#=.]*(?:(?:is|es|é|è|ist|är|er)\s+)?(?::\s*)?([0-9A-Z][0-9A-Z .\-/]{6,22}[0-9A-Z])")
_ID_SEPARATORS = re.compile(r"[ .\-/]")
_CODICE_FISCALE = re.compile(r"(?<![\w-])[A-Z]{6}\d\d[A-EHLMPR-T]\d\d[A-Z]\d{3}[A-Z](?![\w-])")

_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    "|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DOB_CUE = re.compile(
    r"(?i)\b(?:(?:date of birth|birth ?date|birthday|dob|born(?: on)?|geburtsdatum|geboren(?: am)?"
    r"|fecha de nacimiento|date de naissance|n[ée]e? le)\b|d\.o\.b\.?)"
)
_DATE = re.compile(
    rf"(?i)[\s:=]*(?:(?:is|was)\s+)?(?::\s*)?("
    r"(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:19|20)?\d\d"
    rf"|(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\.?,?\s+(?:19|20)\d\d"
    rf"|(?:{_MONTHS})\.?\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,?\s+(?:19|20)\d\d"
    r")(?![\w-]|[./]\d)"
)
"""ISO, day/month/year either way round, and written months; a full date, not a year."""

_PASSPORT_CUE = re.compile(
    r"(?i)\b(?:passport|reisepass|passeport|pasaporte|passaporto)(?:[\s-]*(?:no\.?|nr\.?|number|num\.?|#))?"
)
_PASSPORT_VALUE = re.compile(r"[\s:#=]*(?:(?:is|was)\s+)?#?([A-Z0-9]{6,9})(?![\w-])")
"""ICAO 9303 document numbers: up to nine capital letters and digits."""


def find_national_ids(scan: TextScan) -> Iterator[PiiMatch]:
    """Cues are looked for only shortly before six or more digits: most text never pays for
    the regex. Italian tax codes have their own unmistakable shape and need no cue."""
    text = scan.text
    letters_then_digits = [(start, end) for start, end in scan.digit_runs if text[start - 1 : start].isupper()]
    for start, end in scan.windows(letters_then_digits, 6, 10):
        for found in _CODICE_FISCALE.finditer(text, start, end):
            if not codicefiscale.is_valid(found.group()):
                continue
            yield PiiMatch("national_id", found.start(), found.end(), found.group(), found.group())
    windows = scan.windows(joined_runs(scan, 6), _CUE_REACH, 0)
    for cue in (cue for start, end in windows for cue in _ID_CUE.finditer(text, start, end)):
        cued = _ID_VALUE.match(text, cue.end(), cue.end() + _REACH + 24)
        if cued is None:
            continue
        value = cued.group(1)
        # The value pattern may run into the next word: try it whole, then shorter at separators.
        for end in [len(value)] + [m.start() for m in reversed(list(_ID_SEPARATORS.finditer(value)))]:
            candidate = value[:end].rstrip(" .-/")
            compact = _ID_SEPARATORS.sub("", candidate)
            if sum(c.isdigit() for c in compact) >= 6 and any(f.is_valid(compact) for f in _NATIONAL_ID_FORMATS):
                start = cued.start(1)
                yield PiiMatch("national_id", start, start + len(candidate), candidate, compact.upper())
                break


def find_dates_of_birth(scan: TextScan) -> Iterator[PiiMatch]:
    text = scan.text
    if not any(word in scan.lower for word in ("birth", "dob", "d.o.b", "born", "geb", "naci", "naiss", " le ")):
        return
    for cue in _DOB_CUE.finditer(text):
        found = _DATE.match(text, cue.end(), cue.end() + 48)
        if found is not None:
            value = found.group(1)
            yield PiiMatch("dob", found.start(1), found.end(1), value, value.lower())


def find_passports(scan: TextScan) -> Iterator[PiiMatch]:
    text = scan.text
    if not any(word in scan.lower for word in ("pass", "reisepass")):
        return
    for cue in _PASSPORT_CUE.finditer(text):
        found = _PASSPORT_VALUE.match(text, cue.end(), cue.end() + _REACH + 9)
        if found is not None and any(c.isdigit() for c in found.group(1)):
            value = found.group(1)
            yield PiiMatch("passport", found.start(1), found.end(1), value, value)
