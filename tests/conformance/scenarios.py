"""The calls every package set makes, and the values the evaluator must read back.

Imported by the driver (in a package set's virtualenv) and by the tests (in the main one), so it
imports nothing but the standard library.
"""

from __future__ import annotations

MODEL = "gpt-4o-mini"
MISSING_MODEL = "no-such-model"
SYSTEM = "You are terse."
QUESTION = "Capital of France?"
JSON_QUESTION = "Answer as a JSON object."
FILTERED_QUESTION = "Say something the filter blocks. INJECT_FAULT=content_filter"
NOT_FOUND_QUESTION = "Anyone there? INJECT_FAULT=404"
RAG_QUESTION = "Which city is the capital of France?"
SESSION_ID = "conv-42"
USER_ID = "user-7"
DOCUMENTS = ("Paris is the capital and largest city of France.", "France is a country in Western Europe.")

PLAIN = "plain"
JSON_ANSWER = "json_answer"
STREAM = "stream"
CONTENT_FILTER = "content_filter"
SESSION = "session"
RAG = "rag"
RAG_IDS_ONLY = "rag_ids_only"
NOT_FOUND = "not_found"
CONNECTION_ERROR = "connection_error"

SUCCESSFUL = (PLAIN, JSON_ANSWER, STREAM, CONTENT_FILTER, SESSION, RAG, RAG_IDS_ONLY)
FAILING = (NOT_FOUND, CONNECTION_ERROR)
