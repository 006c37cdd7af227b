"""schemathesis hooks of fintrail's contract test (loaded by crates/api/schemathesis.sh).

Integers in request bodies are integer literals only (issue 16, item 11): `42.0`, `4.2e1` and
`1.00000000000000000001` are refused with 422, never rounded through a float. JSON Schema
2020-12, the dialect of OpenAPI 3.1, cannot state that: to it `42.0` *is* the integer 42, and
schemathesis (4.x, `whole_floats` for JSON bodies under drafts >= 6) deliberately sends such
spellings as positive data. No keyword excludes them (`multipleOf: 1` admits `42.0`); only
Draft 4 (OpenAPI 3.0) defined `integer` as "without fraction or exponent", and the document is
3.1 (utoipa 5). So the document states the rule in words on every integer ("An integer written
without fraction or exponent", `fintrail_api::openapi::INTEGER_NOTE`) and writes every bound as
an integer, and this hook makes the generator follow those words, as a client reading the
document does: a whole float becomes the same integer spelled as one. Nothing else changes: a
fraction (`1.5`) or a float beyond 2^53 still reaches the API, and must be refused.
"""

import schemathesis

_EXACT = 2**53


def _integers(value):
    if isinstance(value, float) and value.is_integer() and -_EXACT <= value <= _EXACT:
        return int(value)
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers(v) for v in value]
    return value


@schemathesis.hook
def map_body(context, body):
    return _integers(body)
