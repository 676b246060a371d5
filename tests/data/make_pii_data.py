"""Regenerate pii_positive.jsonl and pii_lookalikes.jsonl (seeded, so the output is stable).

Self-contained on purpose: it checks Luhn and IBAN checksums with its own few lines instead
of importing evaluator.pii, so the test set does not inherit the detector's bugs.
Run: .venv/bin/python tests/data/make_pii_data.py
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

HERE = Path(__file__).resolve().parent
rng = random.Random(20240501)


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return next(body + d for d in string.digits if luhn_ok(body + d))


def iban_mod97(iban: str) -> int:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97


def make_iban(country: str, bban_format: str) -> str:
    pools = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}
    bban = "".join(rng.choice(pools[kind]) for kind in bban_format)
    check = 98 - iban_mod97(country + "00" + bban)
    return f"{country}{check:02d}{bban}"


def spaced(text: str, size: int = 4) -> str:
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


def card_format(digits: str, style: str) -> str:
    if style == "plain":
        return digits
    sep = " " if style == "space" else "-"
    if len(digits) == 15:
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def rand_token(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """A random token; mixed alphabets always yield both letters and digits, like real keys."""
    mixed = any(c.isdigit() for c in alphabet) and any(c.isalpha() for c in alphabet)
    while True:
        token = "".join(rng.choice(alphabet) for _ in range(length))
        if not mixed or (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
            return token


# ---------------------------------------------------------------- positives

EMAILS = [
    "jane.doe@example.com", "j.smith+billing@acme-corp.io", "OPS@Contoso.COM", "m_garcia@mail.example.org",
    "first.last@sub.domain.co.uk", "dev-team@startup.ai", "x7@short.io", "anna.kowalska@poczta.example.pl",
    "support+ticket-4821@help.example.net", "li.wei@company.cn", "noreply@notifications.example.com",
    "o'brien@example.ie", "marie-claire.dupont@orange.example.fr", "user123@gmail.com", "a.b.c.d@e.example.travel",
    "hr_dept@bigcorp.example.com", "sales@xn--bcher-kva.example", "Tom.Jones@Example.Co", "ceo@tiny.dev",
    "k.tanaka@example.co.jp", "billing.team+q3@finance.example.com", "root@server01.prod.example.net",
    "priya.sharma92@outlook.example.in", "z@z.zz", "carlos_95@correo.example.mx",
]
EMAIL_TEMPLATES = [
    "Please reach me at {v} if the shipment is delayed.",
    "Contact: {v}",
    "Forwarding this to {v}, she owns the migration.",
    '{{"user": {{"email": "{v}", "plan": "pro"}}}}',
    "From: Jane <{v}>",
    "Send the invoice to mailto:{v} before Friday.",
    "Can you update my account email to {v}?",
    "I wrote to {v}. No answer yet.",
    "CC {v}, and cc the legal team as well",
    "login failed for user={v} reason=bad_password",
]

PHONES = [
    "(415) 555-0134", "415.555.0134", "415-555-0134", "415 555 0134", "+1 415 555 0134", "1-800-555-0199",
    "+1-212-555-0187", "(212) 555-0187", "646-555-0142", "+1 (917) 555-0163", "303 555 0112",
    "1 (800) 555-0199", "+14155550134", "+44 20 7946 0958", "+44 121 234 5678", "+44 7400 123456",
    "+33 1 23 45 67 89", "+33 6 12 34 56 78", "+49 30 123456", "+49 1512 3456789",
    "+91 98765 43210", "+91 81234 56789", "+81 3-1234-5678", "+81 90-1234-5678", "+61 2 9374 4000",
    "+61 412 345 678", "+34 912 345 678", "+34 612 34 56 78", "+39 06 6982 1234", "+39 312 345 6789",
    "+55 11 2345-6789", "+55 11 96123-4567", "+52 55 1234 5678", "+1 506-234-5678", "+31 20 123 4567",
    "+31 6 12345678", "+46 8 123 456 78", "+46 70 123 45 67", "+41 44 668 18 00", "+65 6123 4567",
    "+27 21 123 4567", "+353 1 234 5678", "+353 85 012 3456", "+48 22 123 45 67", "+82 2-312-3456",
    "+86 10 1234 5678", "+7 495 123-45-67",
]
PHONE_TEMPLATES = [
    "Call me at {v} after 5pm.",
    "My number is {v}",
    "Phone: {v}",
    "You can text {v} when you arrive.",
    "The hotel front desk ({v}) never picked up.",
    "Reach our support line on {v}, open 24/7.",
    "tel={v};type=mobile",
    "Please change the contact number to {v}.",
]

CARD_NUMBERS = [
    "4111111111111111", "4012888888881881", "4242424242424242", "4000056655665556", "5555555555554444",
    "5105105105105100", "2223003122003222", "5200828282828210", "378282246310005", "371449635398431",
    "378734493671000", "6011111111111117", "6011000990139424", "6011981111111113", "3056930009020004",
    "36227206271667", "3566002020360505", "6200000000000005", "4222222222222",
]
CARD_TEMPLATES = [
    "My card number is {v}, expiry 09/27.",
    "charge {v} for the annual plan",
    "Card: {v} (Visa debit)",
    "I paid with {v} but the order still shows pending.",
    "Please refund the payment made with card {v}.",
    "payment_method={v}&amount=49.99",
    "The card ending in this number {v} was declined twice.",
]

KNOWN_IBANS = [
    "GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606", "NL91ABNA0417164300",
    "BE68539007547034", "CH9300762011623852957", "ES9121000418450200051332", "IT60X0542811101000000123456",
    "AT611904300234573201", "PL61109010140000071219812874", "SE4550000000058398257466", "NO9386011117947",
    "DK5000400440116243", "FI2112345600000785", "IE29AIBK93115212345678", "SA0380000000608010167519",
    "AE070331234567890123456",
]
IBAN_FORMATS = {
    "DE": "n" * 18, "GB": "aaaa" + "n" * 14, "FR": "n" * 10 + "c" * 11 + "nn", "ES": "n" * 20,
    "NL": "aaaa" + "n" * 10, "IT": "a" + "n" * 10 + "c" * 12, "PT": "n" * 21, "LU": "nnn" + "c" * 13,
    "PL": "n" * 24, "BE": "n" * 12, "AT": "n" * 16, "CH": "n" * 5 + "c" * 12, "TR": "n" * 5 + "c" * 17,
}
IBAN_TEMPLATES = [
    "Please wire the deposit to IBAN {v}.",
    "IBAN: {v}",
    "My new bank account is {v}, please update payroll.",
    "Beneficiary account {v} (Sparkasse)",
    "iban={v} bic=DEUTDEFF",
    "Transfer failed for account {v}, can you check?",
]

IPV4 = [
    "203.0.113.7", "198.51.100.23", "192.0.2.146", "8.8.8.8", "10.0.12.34", "172.16.254.1", "192.168.1.20",
    "100.64.3.9", "81.2.69.160", "34.117.59.81", "185.199.108.153", "52.95.110.1", "1.2.3.4", "91.198.174.192",
]
IPV6 = [
    "2001:db8::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a",
    "2606:4700:4700::1111", "2a00:1450:4001:82b::200e", "::ffff:192.0.2.128", "2001:db8:0:0:1:0:0:1", "fd12:3456:789a:1::1",
    "2001:DB8::FF00:42:8329",
]
IP_TEMPLATES = [
    "Requests from {v} are getting rate limited.",
    "client_ip={v} status=403",
    "Please whitelist {v} on the firewall.",
    "The server at {v} stopped responding at noon.",
    "ssh admin@bastion then connect to {v} port 22",
    "Blocked login attempt from {v}.",
]
IP_SPECIAL = [
    ("curl http://203.0.113.50:8080/health returned 502", "203.0.113.50"),
    ("open https://[2001:db8::7]:8443/admin in the browser", "2001:db8::7"),
    ("Allowed range 10.20.0.0/16 on the VPC", "10.20.0.0"),
    ("X-Forwarded-For: 198.51.100.77, 10.1.1.5", "198.51.100.77"),
    ("inet6 fe80::a00:27ff:fe4e:66a1/64 scope link", "fe80::a00:27ff:fe4e:66a1"),
]


def secret_values() -> list[tuple[str, str]]:
    b64url = string.ascii_letters + string.digits + "-_"
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    items = [
        ("Here is my key {v}, why does it return 401?", "sk-" + rand_token(48)),
        ("OPENAI_API_KEY={v}", "sk-proj-" + rand_token(64, b64url)),
        ("export OPENAI_API_KEY={v}", "sk-proj-" + rand_token(48, b64url)),
        ("client = OpenAI(api_key='{v}')", "sk-" + rand_token(40)),
        ("anthropic key: {v}", "sk-ant-api03-" + rand_token(80, b64url)),
        ("aws_access_key_id = {v}", "AKIA" + rand_token(16, string.ascii_uppercase + string.digits)),
        ("The access key {v} was leaked in the repo.", "AKIA" + rand_token(16, string.ascii_uppercase + string.digits)),
        ("temporary creds {v} expire in 1h", "ASIA" + rand_token(16, string.ascii_uppercase + string.digits)),
        ("git clone https://{v}@github.com/org/repo.git", "ghp_" + rand_token(36)),
        ("GITHUB_TOKEN: {v}", "ghp_" + rand_token(36)),
        ("use the token {v} for the CI job", "gho_" + rand_token(36)),
        ("fine-grained token {v}", "github_pat_" + rand_token(22) + "_" + rand_token(59)),
        ("SLACK_BOT_TOKEN={v}", "xoxb-" + "-".join([rand_token(12, string.digits), rand_token(13, string.digits), rand_token(24)])),
        ("my slack user token is {v}", "xoxp-" + "-".join([rand_token(11, string.digits), rand_token(12, string.digits), rand_token(32)])),
        ("Authorization: Bearer {v}", rand_token(40, b64url)),
        ("curl -H 'Authorization: Bearer {v}' https://api.example.com", rand_token(32, b64url + ".")),
        ("auth header was bearer {v} but it expired", rand_token(28)),
        ("id_token={v}", jwt),
        ("The JWT {v} fails validation", jwt),
        ("Authorization: Bearer {v}", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuY29tIiwic3ViIjoiYWJjIn0." + rand_token(86, b64url)),
        ("api_key={v}", rand_token(32)),
        ("API_KEY: {v}", rand_token(24, string.ascii_lowercase + string.digits)),
        ('"apiKey": "{v}"', rand_token(40, string.ascii_letters + string.digits + "_-")),
        ("token: {v}", rand_token(36, string.hexdigits.lower()[:16])),
        ("access_token={v}&expires_in=3600", rand_token(44, b64url)),
        ("client_secret = \"{v}\"", rand_token(40, b64url)),
        ("secret: {v}", rand_token(30)),
        ("aws_secret_access_key={v}", rand_token(40, string.ascii_letters + string.digits + "/+")),
        ("password={v}", rand_token(20, string.ascii_letters + string.digits + "!@#$%")),
        ("google maps key {v}", "AIza" + rand_token(35, b64url)),
        ("STRIPE_SECRET_KEY={v}", "sk_live_" + rand_token(24)),
        ("test with {v} in staging", "sk_test_" + rand_token(24)),
        ("restricted key rk_live is {v}", "rk_live_" + rand_token(24)),
        ("HF_TOKEN={v}", "hf_" + rand_token(34)),
        ("here's my key: {v} please debug", "sk-" + rand_token(48)),
        ("x-api-key: {v}", rand_token(32, string.hexdigits.lower()[:16])),
        ("auth_token: {v}", rand_token(40, b64url)),
        ("Slack webhook signing secret {v}", "xoxa-2-" + rand_token(30)),
    ]
    return [(template.format(v=value), value) for template, value in items]


def ssn_value() -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


SSN_TEMPLATES = [
    "My SSN is {v}, can you check my W-2?",
    "SSN: {v}",
    "social security number {v} on the application",
    "Employee {v} needs the benefits form.",
    "Please verify taxpayer id {v}.",
    "ssn={v}&dob=1990-04-12",
]


def positives() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []

    def add(text: str, kind: str, value: str) -> None:
        assert value in text, (text, value)
        rows.append({"text": text, "kind": kind, "value": value})

    for index, email in enumerate(EMAILS):
        for template in rng.sample(EMAIL_TEMPLATES, 2 if index < 15 else 1):
            add(template.format(v=email), "email", email)
    for phone in PHONES:
        add(rng.choice(PHONE_TEMPLATES).format(v=phone), "phone", phone)
    cards = [(number, style) for number in CARD_NUMBERS for style in ("plain", "space", "dash")][::2]
    for prefix, length in [("4", 16), ("51", 16), ("2720", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("4", 19), ("3566", 16)]:
        cards.append((luhn_complete(prefix, length), rng.choice(["plain", "space", "dash"])))
    for number, style in cards:
        assert luhn_ok(number), number
        value = card_format(number, style)
        add(rng.choice(CARD_TEMPLATES).format(v=value), "card", value)
    ibans = list(KNOWN_IBANS) + [make_iban(c, f) for c, f in IBAN_FORMATS.items()]
    for index, iban in enumerate(ibans):
        assert iban_mod97(iban) == 1, iban
        value = spaced(iban) if index % 2 == 0 else iban
        add(rng.choice(IBAN_TEMPLATES).format(v=value), "iban", value)
    add("iban de89370400440532013000 (lower case, copied from the app)", "iban", "de89370400440532013000")
    for address in IPV4 + IPV6:
        add(rng.choice(IP_TEMPLATES).format(v=address), "ip", address)
    for text, value in IP_SPECIAL:
        add(text, "ip", value)
    for text, value in secret_values():
        add(text, "secret", value)
    add(
        "key below:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7V1p" + rand_token(60) + "\n-----END RSA PRIVATE KEY-----\nthanks",
        "secret",
        "MIIEowIBAAKCAQEA7V1p",
    )
    for _ in range(18):
        add(rng.choice(SSN_TEMPLATES).format(v=(v := ssn_value())), "ssn", v)
    add("SSN 078 05 1120 is the famous Woolworth card number", "ssn", "078 05 1120")
    add("my social security number is 219099999", "ssn", "219099999")
    add("SSN#: 536228741 (from the scanned form)", "ssn", "536228741")
    for text, value in BARE_PHONES:
        add(text, "phone", value)
    return rows


BARE_PHONES = [
    ("call me at 4155550134 tonight", "4155550134"),
    ("My cell: 2125550187", "2125550187"),
    ("6465550142 is my mobile, text me", "6465550142"),
    ("you can reach me on 3035550112", "3035550112"),
]
"""Digits without any formatting count as a phone number only next to a phone word."""


# ---------------------------------------------------------------- look-alikes


def lookalikes() -> list[str]:
    rows: list[str] = []
    hexd = "0123456789abcdef"
    for _ in range(12):
        y, m, d = rng.randint(2015, 2026), rng.randint(1, 12), rng.randint(1, 28)
        hh, mm, ss = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        rows.append(rng.choice([
            f"The meeting moved to {y}-{m:02d}-{d:02d} at {hh:02d}:{mm:02d}.",
            f"Event logged at {y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{rng.randint(100, 999)}Z",
            f"Due date: {d:02d}/{m:02d}/{y}",
            f"Invoice dated {m}/{d}/{y}, paid on {m}/{d + 1}/{y}.",
            f"backup-{y}{m:02d}{d:02d}-{hh:02d}{mm:02d}{ss:02d}.tar.gz finished",
            f"Deadline {d:02d}.{m:02d}.{y} 17:00 CET",
        ]))
    for _ in range(8):
        ts = rng.randint(1_500_000_000, 1_800_000_000)
        rows.append(rng.choice([f"created_at={ts}", f"epoch {ts} seconds", f"ts_ms={ts}{rng.randint(100, 999)}", f"Last-Modified: {ts}000"]))
    versions = ["1.2.3", "v2.0.1", "10.0.19045.3693", "124.0.6367.91", "3.11.4", "1.2.3.4.5", "0.0.1-alpha.3",
                "17.4.1 (21E237)", "5.15.0-105-generic", "2.7.18", "v1.28.3+k3s1", "6.2.0.1000", "8.0.0.21004",
                "build 20240501.3", "1.0.0-rc.1+build.123", "Python 3.12.0"]
    for version in versions:
        rows.append(rng.choice([f"Upgrade to version {version} fixed it.", f"Running {version} on the cluster", f"Tested with {version}."]))
    for bad_ip in ["999.1.1.1", "256.300.1.1", "192.168.1", "300.168.0.1", "1.2.3.256", "10.0", "127.0.0.1.5", "1.2.3.4.5.6",
                   "2.5.10.300", "4.5.6"]:
        rows.append(f"The value {bad_ip} showed up in the config.")
    for _ in range(14):
        valid = luhn_complete(rng.choice(["4", "51", "55", "6011", "37"]), rng.choice([16, 16, 15]))
        bad = valid[:-1] + str((int(valid[-1]) + rng.randint(1, 9)) % 10)
        rows.append(rng.choice([f"Reference number {card_format(bad, 'space')} on the statement", f"ticket id {bad}",
                                 f"shipment {card_format(bad, 'dash')} is in transit", f"account ref {bad} closed"]))
    for bad_ssn in ["000-12-3456", "666-12-3456", "912-34-5678", "987-65-4320", "123-00-4567", "123-45-0000",
                    "000-00-0000", "666-66-6666", "900-12-3456", "078-00-1120", "999-99-9999", "SSN 000123456"]:
        rows.append(f"Test fixture uses {bad_ssn} as an invalid SSN example.")
    for iban in KNOWN_IBANS[:12]:
        check = int(iban[2:4])
        bad = iban[:2] + f"{(check + rng.randint(1, 9)) % 100:02d}" + iban[4:]
        if iban_mod97(bad) != 1:
            rows.append(rng.choice([f"IBAN {spaced(bad)} was rejected by the bank.", f"Typo in account {bad}, please resend."]))
    for _ in range(12):
        uuid = "-".join("".join(rng.choice(hexd) for _ in range(n)) for n in (8, 4, 4, 4, 12))
        rows.append(rng.choice([f"request_id={uuid}", f"Trace {uuid} failed.", f'{{"id": "{uuid}"}}']))
    for _ in range(10):
        sha = "".join(rng.choice(hexd) for _ in range(40))
        rows.append(rng.choice([f"commit {sha}", f"Fixed in {sha[:7]}.", f"sha256 prefix {sha[:16]} matches", f"git checkout {sha[:12]}"]))
    rows += [f"Your total is ${p}." for p in ["1,299.99", "49.00", "12,345,678.90", "0.99", "1,000,000"]]
    rows += [
        "Price: €4.500.000 for the building", "It weighs 12.5 kg and is 1920x1080 pixels.", "Screen is 2560 x 1440 at 144 Hz",
        "Pi is about 3.14159265358979 and e is 2.718281828459045", "Avogadro's number is 6.02214076e23",
        "The population was 1,234,567,890 in the census.", "Distance: 384,400 km", "Coordinates 37.7749, -122.4194",
        "Set the timeout to 30000 ms and retries to 5.", "ratio 16:9 and 4:3", "The meeting is at 10:30, room 4021.",
        "Order #A-10293847 has shipped.", "Amazon order 112-2938475-1234567 arrives Tuesday.", "Order number: 20240501-0042",
        "UPS tracking 1Z999AA10123456784", "USPS tracking 9400 1000 0000 0000 0000 00", "FedEx tracking number 7712 3456 7890",
        "ISBN 978-0-306-40615-7", "ISBN-10: 0-306-40615-2", "ISBN 978-3-16-148410-0 is the second edition",
        "ISSN 0317-8471", "DOI 10.1000/182", "arXiv:2307.09288v2", "PMID 31452104",
        "Error code 0x80070005 (access denied)", "HTTP 404 after 3 retries", "Listening on port 8080",
        "Zip code 94103-1234", "Postcode SW1A 1AA", "Part number 555-0134-A", "Call extension 4410 at the desk",
        "Room 1204, building 7", "SKU 8801643350341", "EAN 4006381333931", "UPC 036000291452",
        "Model XPS-9530-7482", "Serial SN-4C7F-2291-88A0", "MAC OS 14.4.1", "RFC 5322 defines the address format",
        "ISO 27001 and SOC 2 audits", "Temperature was 98.6 F", "Blood pressure 120/80", "Flight LH 4021 at gate B12",
        "license plate 7ABC123", "Patch KB5034441 failed to install", "CVE-2024-3094 affects xz 5.6.0",
        "Step 1.2.3 of the runbook", "chapter 12, verse 4", "Lines 1200-1350 of the log", "matrix 3x3, determinant -42",
        "sum of 1234567 and 7654321", "The answer is 42.", "x = 1e-9; y = 3.0e+8", "hex color #ff00aa and #0a0b0c",
    ]
    rows += [
        "email me at the office tomorrow", "Send an e-mail to the support team", "Ping @jane_doe on Slack",
        "Follow us @AcmeCorp", "icon@2x.png is missing from the bundle", "Use logo@3x.webp for retina screens",
        "npm install lodash@4.17.21", "pip install requests==2.31.0", "FROM python:3.12-slim@sha256:abc123",
        "The @decorator syntax in Python", "meet @ 5pm",
        "C# uses @\"verbatim\" strings", "tweet @ 10:00 sharp", "name@ is incomplete",
        "sk-ating is a winter sport", "ask-me-anything session", "Ask-Me-Anything", "sk-learn is not the package name",
        "risk-free rate", "task-manager-service restarted", "Bearer in mind the deadline.", "bearer bonds are rare",
        "The token: a short-lived credential explained", "api_key=YOUR_API_KEY_HERE", "api_key=<your key>",
        "token: ${GITHUB_TOKEN}", "password: ********", "password=changeme", "max_tokens: 4096", "token_count=1532",
        "tokens: 120 prompt, 45 completion", "set OPENAI_API_KEY in your environment", "AKIA is the prefix of AWS keys",
        "ghp_ tokens are GitHub personal tokens", "xoxb- tokens belong to bots", "the string eyJ starts most JWTs",
        "secret: the-sauce-is-in-the-fridge", "api_key: None", "token=null", "Authorization header missing",
        "sk-proj- prefix indicates a project key", "secret_santa_assignment_list", "The key is under the mat.",
        "Bearer token required", "password_reset_required=true", "AKIAEXAMPLE", "use api_key=os.environ['OPENAI_API_KEY']",
    ]
    rows += [
        "std::vector<int> v;", "Vec::new() allocates lazily", "use crate::db::Pool;", "Foo::bar()", "a::b::c",
        "Time 12:30:45.123", "duration 01:02:03:04", "MAC-48 style id aa:bb:cc:dd:ee:ff",
        "Class::method() is static", "Self::Item", "The ratio is 1:2:3:4", "f :: Int -> Int", "Matthew 5:7 and John 3:16",
        "Ethernet 00:1A:2B:3C:4D:5E", "timecode 00:59:59:29",
    ]
    rows += [
        "Call me tomorrow after lunch", "My phone died yesterday", "Dial 911 in an emergency", "Press 1 for sales",
        "Phone model iPhone 15 Pro", "The extension is 12", "Use 2FA code 482913", "OTP 123456 expires in 5 min",
        "PIN 4821", "Room 555", "555-0134 is too short to dial", "Reference 000-000-0000",
        "Dimensions 100 x 200 x 300 mm", "Chapter 3 pages 123-456", "pp. 212-255", "Order 12345",
        "Between 2010 and 2015 sales grew", "from 1999 to 2004", "Score: 98/100", "Rank 1 of 4096",
        "Memory 16384 MB, disk 512000 MB", "Bitrate 192000 bps", "Frequency 2400000000 Hz", "1,048,576 bytes",
        "0.000001 seconds", "version 2024.05.01", "README v3", "Q3 2024 revenue", "Top 10 list",
    ]
    rows += CODE_LOOKALIKES
    return rows


CODE_LOOKALIKES = [
    "rng = np.random.default_rng(2147483647)",
    "INT32_MAX = 2147483647",
    "x = np.array([312.55501342, -4155550134, 0.2125550187])",
    "odd = items[1::3]",
    "evens = xs[::2]",
    "see RFC 6749 section 4.1.2.1 for invalid_scope",
    "as described in section 3.3.2.4 of the spec",
    '__version__ = "3.5.0.1"',
    "token = base64.b64encode(raw)",
    "auth = MCPRequestHandler.get_oauth2_headers(req)",
    '"max_tokens_per_1_minute": max_tokens_per_1_minute,',
    "input_tokens_details: UsageInputTokensDetails",
    "self._workload_identity_auth = SyncX509WorkloadIdentityAuth()",
    "mDNS uses the multicast group 224.0.0.251",
    "send to the broadcast address 255.255.255.255",
    "seed=3141592653 for reproducibility",
    "see https://github.com/org/repo/issues/12#issuecomment-2727603845",
    "credentials = boto3_session.get_credentials()",
]
"""Code is common in LLM traces: these came up in an audit of masking library source code."""


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main() -> None:
    pos = positives()
    neg = lookalikes()
    assert len(pos) >= 200 and len(neg) >= 200, (len(pos), len(neg))
    write(HERE / "pii_positive.jsonl", [json.dumps(row, ensure_ascii=False) for row in pos])
    write(HERE / "pii_lookalikes.jsonl", [json.dumps({"text": text}, ensure_ascii=False) for text in neg])
    print(f"{len(pos)} positives, {len(neg)} look-alikes")


if __name__ == "__main__":
    main()
