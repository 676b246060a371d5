"""Regenerate pii_recall.jsonl (planted PII in the forms people and programs write it when it is
not the textbook form) and pii_recall_clean.jsonl (PII-free text shaped like it). Seeded.

Each planted row is `{"text", "kind", "value", "variant"}` with `value` in `text`; the test
(tests/test_pii.py) reports recall per kind and per variant. Check digits come from this file's
own few lines (Luhn, mod 97) or, for national identifiers, from python-stdnum's validators by
trying every last digit: the detectors use stdnum too, so those rows test the finding (cue
words, separators), not the arithmetic.
Run: .venv/bin/python tests/data/make_pii_recall.py
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from make_pii_data import iban_mod97, luhn_ok
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.de import idnr
from stdnum.es import dni
from stdnum.in_ import aadhaar
from stdnum.nl import bsn
from stdnum.pl import pesel

HERE = Path(__file__).resolve().parent
rng = random.Random(20261127)
NBSP, NNBSP = "\u00a0", "\u202f"


def digits(count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def with_check(is_valid, body: str, alphabet: str = string.digits) -> str:
    """`body` plus the one last character that `is_valid` accepts (a new body if none does)."""
    while True:
        for char in alphabet:
            if is_valid(body + char):
                return body + char
        body = body[:-1] + rng.choice(string.digits)


def luhn_number(prefix: str, length: int) -> str:
    return with_check(luhn_ok, prefix + digits(length - len(prefix) - 1))


def iban(country: str, bban_digits: int) -> str:
    bban = digits(bban_digits)
    return f"{country}{98 - iban_mod97(country + '00' + bban):02d}{bban}"


def token(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """Random, with a digit and a letter of each case the alphabet has, like real keys."""
    classes = [test for test in (str.isdigit, str.isupper, str.islower) if any(map(test, alphabet))]
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(length))
        if all(any(map(test, value)) for test in classes):
            return value


# ---------------------------------------------------------------- planted values: (variant, text with {v}, value)

EMAILS = [
    ("spelled out", "write to {v} for the refund", "jane dot doe at example dot com"),
    ("spelled out", "my address is {v}", "m dot garcia at mail dot example dot org"),
    ("spelled out", "email {v} please", "carlos at correo dot example dot mx"),
    ("spelled out", "it's {v}, all lower case", "tom dot jones at gmail dot com"),
    ("spelled out", "Contact: {v}", "OPS AT CONTOSO DOT COM"),
    ("bracketed", "reach me at {v}", "jane.doe [at] example [dot] com"),
    ("bracketed", "mail {v} with questions", "support(at)acme-corp.io"),
    ("bracketed", "Send it to {v}.", "li.wei (at) company (dot) cn"),
    ("bracketed", "my email: {v}", "k.tanaka{at}example.co.jp"),
    ("bracketed", "address {v} (spam-proofed)", "priya [@] outlook.example.in"),
    ("bracketed", "Kontakt: {v}", "anna.kowalska [at] poczta.example.pl"),
    ("bracketed", "forward to {v}", "hr_dept <at> bigcorp <dot> com"),
    ("bracketed", "email {v}", "dev-team[at]startup[dot]ai"),
    ("bracketed", "Reply to {v}", "sales (at) example (dot) co (dot) uk"),
    ("bracketed", "write {v}", "root [AT] server01 [DOT] example [DOT] net"),
    ("full-width @", "メール: {v}", "tanaka＠example.co.jp"),
    ("full-width @", "contact {v} today", "jane.doe＠example.com"),
    ("full-width @", "mail {v}", "ops﹫contoso.com"),
    ("full-width @", "email: {v}", "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
    ("IDN domain", "Bestellung an {v} schicken", "info@bücher.de"),
    ("IDN domain", "contact {v}", "josé.garcía@correo.españa.es"),
    ("IDN domain", "邮箱 {v}", "用户@例子.广告"),
    ("IDN domain", "пишите на {v}", "иван@пример.рф"),
    ("IDN domain", "email {v} anytime", "pelé@exämple.com"),
    ("IDN domain", "Mail: {v}", "kontakt@münchen-reisen.de"),
    ("IDN domain", "write to {v}", "sales@xn--bcher-kva.example"),
    ("quoted local part", "send to {v}", '"john doe"@example.com'),
    ("quoted local part", "From: {v}", '"jane.doe+billing"@acme.io'),
    ("quoted local part", "legacy address {v} still works", '"very.unusual.@.unusual.com"@example.com'),
    ("quoted local part", "cc {v}", '"o\'brien"@example.ie'),
    ("spelled out", "my gmail is {v}", "priya dot sharma92 at gmail dot com"),
    ("bracketed", "abuse reports: {v}", "abuse[at]example[.]net"),
    ("full-width @", "联系 {v}", "li.wei＠company.cn"),
    ("IDN domain", "écrivez à {v}", "hélène@société.fr"),
]

PHONES = [
    ("00 prefix", "Call me at {v} after 5pm.", "0044 20 7946 0958"),
    ("00 prefix", "My number is {v}", "0033 1 23 45 67 89"),
    ("00 prefix", "Phone: {v}", "0049 30 1234567"),
    ("00 prefix", "Büro: {v}", "0041 44 668 18 00"),
    ("00 prefix", "call {v} from abroad", "0034 912 345 678"),
    ("00 prefix", "Reach our office on {v}", "0031 20 123 4567"),
    ("00 prefix", "Tel. {v}", "0039 06 6982 1234"),
    ("00 prefix", "mobile {v}", "0044 7400 123456"),
    ("00 prefix", "whatsapp {v}", "0091 98765 43210"),
    ("00 prefix", "Phone {v} (Sydney)", "0061 2 9374 4000"),
    ("00 prefix", "ring {v}", "0046 8 123 456 78"),
    ("00 prefix", "fax {v}", "0048 22 123 45 67"),
    ("00 prefix", "call {v}", "0049-30-1234567"),
    ("00 prefix", "Tel: {v}", "00353 1 234 5678"),
    ("00 prefix", "call {v} (Tokyo)", "0081 3-1234-5678"),
    ("011 prefix", "From the US dial {v}", "011 44 20 7946 0958"),
    ("011 prefix", "call {v}", "011 33 1 23 45 67 89"),
    ("vanity", "Order flowers at {v} today", "1-800-FLOWERS"),
    ("vanity", "call {v} to book a pickup", "1-800-GOT-JUNK"),
    ("vanity", "Call {v} for lenses", "1-800-CONTACTS"),
    ("vanity", "dial {v}", "1-888-NEW-CARS"),
    ("vanity", "Ring {v} any time", "1 (800) MY-APPLE"),
    ("vanity", "Support: {v}", "(800) 555-HELP"),
    ("vanity", "call us at {v}", "+1 800 GO FEDEX"),
    ("vanity", "hotline {v}", "1-877-KARS4KIDS"),
    ("vanity", "Questions? {v}", "800-PET-MEDS"),
    ("dotted", "call {v}", "+44.20.7946.0958"),
    ("plain", "my phone is {v}", "+1 (415) 555-0134 ext. 12"),
]


def cards() -> list[tuple[str, str, str]]:
    templates = ["My card number is {v}, expiry 09/27.", "charge {v} for the annual plan", "Card: {v} (Visa debit)",
                 "I paid with {v} but the order still shows pending.", "payment_method={v}&amount=49.99",
                 "card no. {v} was declined"]
    rows = []
    brands = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("6011", 16), ("4", 16), ("37", 15), ("34", 15)]
    for separator in (".", "/", "_", NBSP):
        for prefix, length in brands:
            number = luhn_number(prefix, length)
            groups = [number[:4], number[4:10], number[10:]] if length == 15 else [number[i:i + 4] for i in range(0, 16, 4)]
            rows.append((f"separator {separator!r}", rng.choice(templates), separator.join(groups)))
    odd = [[4, 6, 6], [5, 5, 6], [8, 8], [4, 12], [6, 10], [2, 2, 4, 4, 4], [4, 4, 8], [3, 4, 4, 5], [7, 9], [4, 4, 4, 2, 2]]
    for sizes in odd:
        number, groups, at = luhn_number(rng.choice(["4", "51", "6011"]), 16), [], 0
        for size in sizes:
            groups.append(number[at:at + size])
            at += size
        rows.append(("odd grouping", rng.choice(templates), rng.choice([" ", "-"]).join(groups)))
    rows.append(("mixed separators", "card {v} on file", "4111-1111 1111-1111"))
    rows.append(("mixed separators", "pay with {v}", "5555 5555-5555 4444"))
    return rows


def ibans() -> list[tuple[str, str, str]]:
    templates = ["Please wire the deposit to IBAN {v}.", "IBAN: {v}", "My new bank account is {v}, please update payroll.",
                 "Beneficiary account {v}", "iban={v} bic=DEUTDEFF", "Transfer failed for account {v}."]
    rows = []
    for index, (country, bban) in enumerate([("DE", 18), ("FR", 23), ("ES", 20), ("NL", 14), ("BE", 12), ("AT", 16),
                                             ("PL", 24), ("PT", 21), ("CH", 17), ("IT", 23)] * 3):
        number = iban(country, bban)
        if country == "NL":
            number = number[:4] + "ABNA" + number[8:]
            number = number[:2] + f"{98 - iban_mod97(number[:2] + '00' + number[4:]):02d}" + number[4:]
        if country == "IT":
            number = number[:4] + "X" + number[5:]
            number = number[:2] + f"{98 - iban_mod97(number[:2] + '00' + number[4:]):02d}" + number[4:]
        assert iban_mod97(number) == 1, number
        separator, variant = [("-", "dashes"), (NBSP, "no-break spaces"), (NNBSP, "narrow no-break spaces")][index % 3]
        value = separator.join(number[i:i + 4] for i in range(0, len(number), 4))
        rows.append((variant, rng.choice(templates), value.lower() if index % 7 == 3 else value))
    return rows


def ssns() -> list[tuple[str, str, str]]:
    rows = []
    for index in range(36):
        area = rng.choice([a for a in range(1, 900) if a != 666])
        parts = f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"
        separator, variant, template = [
            (".", "dotted", "My SSN is {v}, can you check my W-2?"),
            (".", "dotted", "the form lists {v} as the applicant's number"),
            (" ", "spaced", "SSN: {v}"),
            (" ", "spaced", "social security number {v} on the application"),
            ("/", "slashes", "SSN {v}"),
            (NBSP, "no-break spaces", "Social Security No. {v}"),
        ][index % 6]
        rows.append((variant, template, separator.join(parts)))
    return rows


def ips() -> list[tuple[str, str, str]]:
    templates = ["Requests from {v} are getting rate limited.", "client_ip={v} status=403", "Please whitelist {v}.",
                 "The server at {v} stopped responding.", "Blocked login attempt from {v}."]
    values = ["010.001.002.003", "192.168.001.020", "203.000.113.007", "008.008.008.008", "172.016.254.001",
              "010.000.000.001", "081.002.069.160", "034.117.059.081", "198.051.100.023", "100.064.003.009",
              "192.168.000.010", "001.002.003.004", "052.095.110.001", "091.198.174.192", "185.199.108.153",
              "009.009.009.009", "172.031.000.001", "192.000.002.146", "045.033.032.156", "023.045.067.089"]
    rows = [("leading zeros", rng.choice(templates), value) for value in values]
    rows += [("in a URL", "curl http://{v}:8080/health", "010.020.030.040"),
             ("in a list", "allow {v}, deny the rest", "192.168.010.005")]
    return rows


def secrets() -> list[tuple[str, str, str]]:
    b64 = string.ascii_letters + string.digits + "+/"
    b64url = string.ascii_letters + string.digits + "-_"
    rows = []
    for template in ["aws creds: AKIAIOSFODNN7EXAMPLE {v}", "the secret part is {v} keep it safe", "{v}",
                     "export AWS_SECRET={v}", "secret key\n{v}\n", "use {v} for the s3 bucket"]:
        rows.append(("bare AWS secret key", template, token(40, b64)))
    for _ in range(5):
        url = f"https://hooks.slack.com/services/T{token(8, string.ascii_uppercase + string.digits)}/B{token(10, string.ascii_uppercase + string.digits)}/{token(24)}"
        rows.append(("Slack webhook URL", rng.choice(["post alerts to {v}", "SLACK_WEBHOOK={v}", "webhook: {v}"]), url))
    rows.append(("Discord webhook URL", "notify {v} on deploy", f"https://discord.com/api/webhooks/{digits(18)}/{token(68, b64url)}"))
    for template, value in [
        ("Authorization: Bearer {v}", token(12)),
        ("curl -H 'Authorization: Bearer {v}'", "".join(rng.choice(string.ascii_letters) for _ in range(32))),
        ("bearer {v}", token(20, b64url + ".~")),
        ("header was Bearer {v} and it expired", token(11)),
        ("Authorization: Token {v}", token(40, string.hexdigits.lower()[:16] + "ABCDEF")),
        ('{{"Authorization": "Bearer {v}"}}', token(24)),
    ]:
        rows.append(("Bearer token", template, value))
    for template, value in [
        ("my password is {v}", "Hunter2!"), ("The password is {v} for the staging box", "correct-Horse7"),
        ("pwd is {v}", "Summer2024"), ("password was {v} until yesterday", "qwerty123"),
        ("wifi password is: {v}", "Gr33nTea#42"), ('his password is "{v}"', "P@ssw0rd"),
        ("the passcode is {v}.", "739214"), ("Password = {v}", "letmein99"),
        ("my PIN is {v}", "4821"), ("passphrase is {v}", "blue-Monkey-42"),
    ]:
        rows.append(("password in prose", template, value))
    for variant, template, value in [
        ("ya29. (Google OAuth)", "access token {v}", "ya29." + token(60, b64url)),
        ("ya29. (Google OAuth)", "Authorization: Bearer {v}", "ya29.a0" + token(80, b64url)),
        ("npm_", "//registry.npmjs.org/:_authToken={v}", "npm_" + token(36)),
        ("npm_", "NPM_TOKEN {v}", "npm_" + token(36)),
        ("glpat-", "gitlab token {v}", "glpat-" + token(20, b64url)),
        ("glpat-", "git clone https://oauth2:{v}@gitlab.com/group/repo.git", "glpat-" + token(20)),
        ("pypi-", "twine upload -p {v}", "pypi-AgEIcHlwaS5vcmc" + token(50, b64url)),
        ("SG. (SendGrid)", "SENDGRID_API_KEY={v}", "SG." + token(22, b64url) + "." + token(43, b64url)),
    ]:
        rows.append((variant, template, value))
    return rows


def national_ids() -> list[tuple[str, str, str]]:
    rows = [
        ("codice fiscale", "codice fiscale {v}", "RSSMRA85T10A562S"),
        ("codice fiscale", "Il mio CF è {v}.", "MRTMTT91D08F205J"),
    ]
    for _ in range(4):
        rows.append(("BSN (NL)", rng.choice(["BSN {v}", "mijn burgerservicenummer is {v}"]), with_check(bsn.is_valid, digits(8))))
        rows.append(("SIN (CA)", rng.choice(["SIN: {v}", "social insurance number {v}"]), with_check(sin.is_valid, rng.choice("1234567") + digits(7))))
        rows.append(("Steuer-ID (DE)", rng.choice(["Steuer-ID {v}", "Steueridentifikationsnummer: {v}"]), with_check(idnr.is_valid, rng.choice("123456789") + "".join(rng.sample(string.digits, 9)))))
        rows.append(("Aadhaar (IN)", rng.choice(["Aadhaar {v}", "aadhaar number: {v}"]), with_check(aadhaar.is_valid, rng.choice("23456789") + digits(10))))
        body = digits(9)
        number = next(body + f"{n:02d}" for n in range(100) if cpf.is_valid(body + f"{n:02d}"))
        rows.append(("CPF (BR)", rng.choice(["CPF {v}", "meu CPF é {v}"]), cpf.format(number)))
        rows.append(("DNI (ES)", rng.choice(["DNI {v}", "mi DNI es {v}"]), with_check(dni.is_valid, digits(8), string.ascii_uppercase)))
        rows.append(("PESEL (PL)", rng.choice(["PESEL {v}", "numer PESEL: {v}"]), with_check(pesel.is_valid, f"{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" + digits(4))))
    rows += [("NIE (ES)", "NIE {v}", "X2482300W"), ("NIR (FR)", "numéro de sécurité sociale {v}", "2 95 10 99 126 111 93"),
             ("NHS (GB)", "NHS number {v}", "943 476 5919"), ("ITIN (US)", "ITIN {v}", "912-90-3456")]
    return rows


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def dates_of_birth() -> list[tuple[str, str, str]]:
    rows = []
    for index in range(32):
        y, m, d = rng.randint(1940, 2010), rng.randint(1, 12), rng.randint(1, 28)
        value = [f"{y}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y}", f"{d} {MONTHS[m - 1]} {y}", f"{MONTHS[m - 1]} {d}, {y}",
                 f"{d:02d}.{m:02d}.{y}"][index % 5]
        template = ["DOB: {v}", "date of birth {v}", "I was born on {v} in Ohio", "born {v}", "Date of Birth: {v}",
                    "birthday is {v}", "d.o.b. {v}", "birthdate={v}"][index % 8]
        rows.append(("with a cue word", template, value))
    return rows


def passports() -> list[tuple[str, str, str]]:
    values = ["C01X00T47", "123456789", "L898902C3", "X4RTBPFW4", "AB1234567", "12AB34567", "K0123456", "P1234567A",
              "E12345678", "GB1234567", "543210987", "N1234567"]
    templates = ["passport number {v}", "Passport No. {v}", "passport #{v}", "my passport is {v}", "Reisepass-Nr. {v}",
                 "passport: {v}"]
    return [("with a cue word", rng.choice(templates), value) for value in values]


def planted() -> list[dict[str, str]]:
    groups = {"email": EMAILS, "phone": PHONES, "card": cards(), "iban": ibans(), "ssn": ssns(), "ip": ips(),
              "secret": secrets(), "national_id": national_ids(), "dob": dates_of_birth(), "passport": passports()}
    rows = []
    for kind, planted_values in groups.items():
        for variant, template, value in planted_values:
            text = template.replace("{v}", value)
            rows.append({"text": text, "kind": kind, "value": value, "variant": variant})
    return rows


# ---------------------------------------------------------------- PII-free look-alikes

CLEAN = [
    # "at" and "dot" in prose, @ in code and handles
    "look at this dot com bubble", "meet me at noon, dot the i's", "the party is at Sam's, dress code: dot matrix",
    "I work at a dot com startup", "Arrive at gate 12 [at] 9 am", "Costs 5 @ 3 each", "ping @jane_doe [at] the standup",
    "see the dot product at line 42", "sold at auction (at) Christie's", "at least one dot at the end",
    "npm install lodash@4.17.21", "FROM python:3.12-slim@sha256:abc123",
    "decorator @functools.lru_cache(maxsize=128)", "Follow us @AcmeCorp", "meet @ 5pm",
    "the word at is a preposition, dot is a noun", "Stay at home, dot your calendar",
    # versions, builds, dates, times, numbers written with dots, slashes and underscores
    "Upgrade to version 10.0.19045.3693", "Chrome 124.0.6367.91 crashed", "build 2024.05.01.1234 is out",
    "release 123.45.6789 of the firmware", "version 001.002.003.004 of the schema", "tagged v010.001.002.003",
    "dates: 2024/05/01, 2024/06/01 and 2024/07/01", "meeting 01.02.2024 10:30", "2024-05-01T12:30:45.123456Z",
    "logged at 12:30:45.123 on 2024/05/01", "timestamp 1714567890123 ms", "pi = 3.1415926535897932384626",
    "x = 1_000_000_000_000_000", "MAX = 9_223_372_036_854_775_807", "big = 4_294_967_295_000_000",
    "ratio 0.4111111111111111 converges", "coords 41.1111, -111.1111", "matrix 4111/1111 rows per column",
    "file_2024_05_01_1234_5678.csv", "IMG_20240501_123456789.jpg", "run_4111_1111_1111_1112 failed",
    "items 1.2.3.4.5.6.7.8.9.10.11.12.13", "ISBN 978-0-306-40615-7", "ISBN-10: 0-306-40615-2",
    "section 123.45.6789 of the tax code", "RFC 6749 section 4.1.2.1", "see paragraph 12.34.5678",
    "Order #A-10293847 has shipped.", "Amazon order 112-2938475-1234567 arrives Tuesday.",
    "Order number: 20240501-0042", "UPS tracking 1Z999AA10123456784", "tracking 9400 1000 0000 0000 0000 00",
    "invoice INV-2024-000123456", "ticket JIRA-12345 and PR #6789", "SKU 8801643350341", "EAN 4006381333931",
    "order id 4111-1111-11", "account 1234 5678 9012 3456 (test data, Luhn fails)", "ref 4111.1111.1111.1112",
    "temperature 036.6 C", "scores 100.100.100.1000", "CIDR 0.0.0.0/0", "localhost 127.000.000.001",
    "decimal 123.456.789,00 EUR", "price 1.234.567,89", "Version 2.7.18.0.0.1",
    # phone-like, not phones
    "Call me tomorrow after lunch", "Press 1-800 on the keypad? No, press 1 then 800.", "Room 1-800-B",
    "DIAL-A-RIDE service", "TEAM-USA-2024", "1-800-NOT-A-NUMBER", "Lines 0044-0099 of the log",
    "Error 0x0044 at 0033", "version 0044.20.7946.0958", "HTTP/1.1 200 OK", "ABC-DEF-GHIJ",
    "FAQ-WIKI-HELP page", "Model XPS-9530-7482", "Serial SN-4C7F-2291-88A0", "call stack at 0x7fff5fbff8a0",
    # IBAN/SSN/ID shaped, not valid
    "IBAN DE89-3704-0044-0532-0130-01 was rejected", "code DE12-3456-7890", "SSN 000.12.3456 is invalid",
    "ref 666.12.3456", "part 912.34.5678", "ID 123 45 6789 in the table", "area code 123/45/6789",
    "codice ABCDEF12G34H567I", "BSN 123456789 is not a valid example", "ticket 54362315 K-block",
    "version 36.574.261.809", "sum 234123412345", "number 390.533.447-06",
    # secrets shaped, not secrets
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8", "sha1 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
    "ThisIsAVeryLongCamelCaseIdentifierNameX", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",
    "AbstractSingletonProxyFactoryBeanImplV2", "path src/main/java/com/example/service/Impl",
    "base64 aGVsbG8gd29ybGQ= means hello world", "docs at https://hooks.slack.com/services is the endpoint",
    "see https://api.slack.com/messaging/webhooks", "Bearer in mind the deadline.", "Bearer token required",
    "Authorization: Bearer <token>", "Authorization: Bearer $TOKEN", "Authorization: Bearer YOUR_ACCESS_TOKEN",
    "Authorization: Bearer ${GITHUB_TOKEN}", "bearer bonds are rare", "Authorization: Bearer <SECRET_1>",
    "The password is required", "password is incorrect", "your password is too short", "The password was reset",
    "password is ********", "password is: (hidden)", "the password is stored hashed", "Password is case-sensitive",
    "the password is the one from the email", "my pin is broken", "ya29 is a prefix", "npm_modules is not a folder",
    "glpat- tokens are GitLab's", "npm_config_registry=https://registry.npmjs.org", "ya29.example",
    "pypi-upload is the job name", "SG.example", "my_password_is_set = True", "password_is_valid(pw)",
    # dates near birth words, not dates of birth
    "born in 1985", "born on the 4th of July", "the project was born out of frustration", "Birthday party at 5pm",
    "DOB field is optional", "date of birth: unknown", "reborn 2024-05-01 as v2", "stillborn plan",
    "created 2024-05-01", "expires 12/31/2026", "valid from 01.01.2024 to 31.12.2024",
    # passport words, no number
    "passport photo requirements", "bring your passport", "Passport.js is an auth library",
    "passport number format differs by country", "passport office hours 9-17", "passport: valid",
]
"""PII-free text shaped like the planted values: each line names the look-alike it is."""


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main() -> None:
    rows = planted()
    assert all(row["value"] in row["text"] for row in rows)
    assert len(rows) >= 300, len(rows)
    write(HERE / "pii_recall.jsonl", [json.dumps(row, ensure_ascii=False) for row in rows])
    write(HERE / "pii_recall_clean.jsonl", [json.dumps({"text": text}, ensure_ascii=False) for text in CLEAN])
    print(f"{len(rows)} planted values, {len(CLEAN)} PII-free look-alikes")


if __name__ == "__main__":
    main()
